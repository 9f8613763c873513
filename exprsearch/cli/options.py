"""frozen config dataclasses --> command-line options (and back).

Input: a frozen dataclass whose fields carry a trailing ``# comment``.  Output: argparse options
named after the fields (``max_depth`` -> ``--max-depth``), the comment as help text and the
default shown; ``from_args`` rebuilds the dataclass.  Invariant: the dataclass is the single
definition of each option, its default and its documentation.

>>> import argparse
>>> from exprsearch.space.generate import Space
>>> p = argparse.ArgumentParser()
>>> add_dataclass_args(p, Space)
>>> from_args(Space, p.parse_args(["--max-depth", "4", "--unary", "gelu,relu"])).unary
('gelu', 'relu')
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import typing
from typing import Any, TypeVar

from exprsearch.errors import ConfigError

__all__ = ["add_dataclass_args", "from_args", "field_comments", "to_dict", "help_text"]

T = TypeVar("T")
_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+?)\s*$")


def field_comments(cls: type) -> dict[str, str]:
    """Trailing comments of a dataclass's field lines (the field documentation)."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {m.group(1): m.group(2) for m in map(_COMMENT.match, src.splitlines()) if m}


def _public_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.name.startswith("_") and f.init]


def _parser_for(tp: Any) -> tuple[Any, str]:
    origin = typing.get_origin(tp)
    if origin is tuple:
        (elem, *_) = typing.get_args(tp)
        conv = int if elem is int else float if elem is float else str
        return (lambda s: tuple(conv(v.strip()) for v in s.split(",") if v.strip())), "A,B,..."
    if origin is typing.Union or origin is getattr(__import__("types"), "UnionType", None):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        conv, metavar = _parser_for(args[0])
        if len(args) < len(typing.get_args(tp)):  # Optional: 'none' gives None
            return (lambda s: None if s.strip().lower() == "none" else conv(s)), f"{metavar}|none"
        return conv, metavar
    if tp in (int, float, str):
        return tp, tp.__name__.upper()
    return str, "VALUE"


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """One option per public field of ``cls`` (defaults come from the dataclass itself)."""
    hints = typing.get_type_hints(cls)
    docs = field_comments(cls)
    group = parser.add_argument_group(f"{cls.__name__} options")
    for f in _public_fields(cls):
        if f.name in skip:
            continue
        tp = hints[f.name]
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{f.name} has no default: every option's field needs one")
        help_ = help_text(docs.get(f.name, ""), default)
        flags = ["--" + f.name.replace("_", "-"), *f.metadata.get("flags", ())]  # metadata flags: short aliases
        if tp is bool and f.name.startswith("no_"):  # --no-kd and its opposite --kd (not --no-no-kd)
            group.add_argument(*flags, dest=f.name, action="store_true", default=argparse.SUPPRESS, help=help_)
            group.add_argument("--" + f.name[3:].replace("_", "-"), dest=f.name, action="store_false",
                               default=argparse.SUPPRESS, help=f"the opposite of {flags[0]}")
        elif tp is bool:
            group.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_)
        else:
            conv, metavar = _parser_for(tp)
            group.add_argument(*flags, dest=f.name, type=conv, metavar=metavar,
                               default=argparse.SUPPRESS, help=help_)


def help_text(doc: str, default: Any) -> str:
    """An option's help: its field comment, and its default unless the comment already says it
    (``None`` as the command line spells it: none; a tuple as its comma list).

    >>> help_text("first N rows only", None), help_text("GLUE folder (default: $GLUE_DIR)", None)
    ('first N rows only (default: none)', 'GLUE folder (default: $GLUE_DIR)')
    >>> help_text("padded lengths", (32, 64))
    'padded lengths (default: 32,64)'
    """
    if "default" in doc.lower():
        return doc
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else "none" if default is None else default
    return f"{doc} (default: {shown})".strip()


def from_args(cls: type[T], ns: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from the options given on the command line (others keep their defaults)."""
    given = {f.name: getattr(ns, f.name) for f in _public_fields(cls) if hasattr(ns, f.name)}
    given.update(overrides)
    try:
        return cls(**given)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid {cls.__name__} options: {err}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """Public fields of a config dataclass as plain JSON-able values."""
    return {f.name: (list(v) if isinstance(v := getattr(obj, f.name), tuple) else v)
            for f in _public_fields(type(obj))}
