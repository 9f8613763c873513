"""One error hierarchy, rooted at ``ExprSearchError``.

Every failure a user can cause is a subclass; the CLI prints ``str(err)`` and exits 2, so messages
are complete sentences.  DSL errors carry the source text and a span and render the offending line
with a caret under the bad columns:

>>> err = DSLSyntaxError("unexpected ','", text="gelu(x,,x)", span=(7, 8))
>>> print(err)
unexpected ','
  at line 1, column 8:
    gelu(x,,x)
           ^
"""
from __future__ import annotations

import difflib
import math
import unicodedata
from typing import Any

__all__ = [
    "ExprSearchError", "ConfigError", "DeviceError", "GraphMemoryLost", "RunAborted", "DSLError", "DSLSyntaxError", "UnknownNameError", "ArityError",
    "SlotTypeError", "InputTooLargeError", "NestingTooDeepError", "ValidityError", "SlotCountError",
    "SlotOrderError", "LinearMismatchError", "NestedActivationError", "NestedLinearError",
    "UnreachableInputError", "OutputError", "WidthError", "suggest", "check_whole", "check_number",
]

_CONTEXT = 60  # characters of a long line shown on each side of the error


class ExprSearchError(Exception):
    """Root of every error exprsearch raises on purpose (bad input, bad config, failed run)."""


class ConfigError(ExprSearchError):
    """A configuration value or command-line option is invalid."""


# -- range checks of the frozen config dataclasses: their __post_init__ name fields and ranges, so a
# bad value (an option, a preset, a stored run, a library call) is one ConfigError at construction,
# not a crash or a NaN loss minutes later.  None is "not set" and always passes.

def _bounds(**limits: float | None) -> str:
    signs = {"above": ">", "least": ">=", "below": "<", "most": "<="}
    return " and ".join(f"{signs[k]} {v:g}" for k, v in limits.items() if v is not None)


def check_whole(cfg: object, *names: str, least: int = 0, most: int | None = None, each: bool = False) -> None:
    """Integer fields of ``cfg`` from ``least`` to ``most`` (``each``: every item of a tuple field).

    >>> from types import SimpleNamespace
    >>> check_whole(SimpleNamespace(steps=0), "steps", least=1)
    Traceback (most recent call last):
    ...
    exprsearch.errors.ConfigError: steps must be a whole number >= 1, got 0
    """
    for name in names:
        value = getattr(cfg, name)
        for v in (value if each else (value,)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < least
                                  or (most is not None and v > most)):
                raise ConfigError(f"{name} must be {'whole numbers' if each else 'a whole number'} "
                                  f"{_bounds(least=least, most=most)}, got {value!r}")


def check_number(cfg: object, *names: str, above: float | None = None, least: float | None = None,
                 below: float | None = None, most: float | None = None, each: bool = False) -> None:
    """Finite real fields of ``cfg`` within the bounds given (``each``: every item of a tuple field).

    >>> from types import SimpleNamespace
    >>> check_number(SimpleNamespace(lr=float("nan")), "lr", above=0)
    Traceback (most recent call last):
    ...
    exprsearch.errors.ConfigError: lr must be a finite number > 0, got nan
    """
    for name in names:
        value = getattr(cfg, name)
        for v in (value if each else (value,)):
            if v is None:
                continue
            if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                    or (above is not None and not v > above) or (least is not None and not v >= least)
                    or (below is not None and not v < below) or (most is not None and not v <= most)):
                raise ConfigError(f"{name} must be {'finite numbers' if each else 'a finite number'} "
                                  f"{_bounds(above=above, least=least, below=below, most=most)}, got {value!r}")


class DeviceError(ExprSearchError):
    """The accelerator is in a state no candidate caused (a CUDA fault, a poisoned generator):
    it stops the work of its process instead of failing candidate after candidate."""


class GraphMemoryLost(DeviceError):
    """A CUDA-graph capture ran out of memory: its private memory pool is not given back before
    the process ends, so the process is replaced (and its group made smaller)."""


class RunAborted(ExprSearchError):
    """A search stopped because its failures are not the candidates' (the message names the
    cause and the fix; ``--resume`` continues once it is fixed)."""


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """The closest name in ``choices``, if any is close.

    >>> suggest("gleu", ["gelu", "relu", "elu"])
    'gelu'
    """
    best = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return best[0] if best else None


def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _printable(s: str) -> str:
    return "".join(c if c.isprintable() or c == " " else "?" for c in s.replace("\t", " "))


def render_span(text: str, span: tuple[int, int], origin: str | None = None, line_offset: int = 0) -> str:
    """The line holding ``span`` with carets under it (long lines are windowed).

    ``origin`` (a file name) and ``line_offset`` make the location read ``file:line:column``."""
    start, end = max(0, min(span[0], len(text))), max(0, min(span[1], len(text)))
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    line_end = len(text) if line_end < 0 else line_end
    lineno = text.count("\n", 0, start) + 1
    col = start - line_start
    end = min(max(end, start + 1), line_end if line_end > start else start + 1)
    lo = max(line_start, start - _CONTEXT)
    hi = min(line_end, max(end, start + 1) + _CONTEXT)
    prefix = "..." if lo > line_start else ""
    suffix = "..." if hi < line_end else ""
    shown = _printable(text[lo:hi])
    pad = _width(prefix) + _width(_printable(text[lo:start]))
    marks = max(1, _width(_printable(text[start:end])))
    where = (f"{origin}:{lineno + line_offset}:{col + 1}" if origin
             else f"line {lineno}, column {col + 1}")
    return f"  at {where}:\n    {prefix}{shown}{suffix}\n    {' ' * pad}{'^' * marks}"


class DSLError(ExprSearchError):
    """An expression text (or AST) is malformed or invalid.

    ``text`` and ``span`` (character offsets, end exclusive) locate it when the error came from
    text; ``node`` is the offending AST node when known; ``hint`` is one extra sentence.
    """

    def __init__(self, message: str, *, text: str | None = None, span: tuple[int, int] | None = None,
                 node: Any = None, hint: str | None = None, arg: int | None = None) -> None:
        super().__init__(message)
        self.message, self.text, self.span, self.node, self.hint = message, text, span, node, hint
        self.arg = arg  # index of the offending argument, for errors about one argument
        self.within: Any = None         # a node whose occurrence contains ``node`` (for locating it)
        self.origin: str | None = None  # file the text came from (set by readers of files)
        self.line_offset = 0            # line of ``text`` within ``origin``, minus one

    def located(self, text: str, span: tuple[int, int] | None) -> "DSLError":
        """Attach source text and span (used when the AST was built from text); returns self."""
        if self.text is None:
            self.text, self.span = text, span
        return self

    def __str__(self) -> str:
        parts = [self.message]
        if self.node is not None and self.text is None:
            parts.append(f"  in: {str(self.node)[:200]}")
        if self.text is not None and self.span is not None:
            parts.append(render_span(self.text, self.span, self.origin, self.line_offset))
        if self.hint:
            parts.append(f"  hint: {self.hint}")
        return "\n".join(parts)


class DSLSyntaxError(DSLError):
    """The text does not follow ``grammar/ffn.lark``."""


class UnknownNameError(DSLSyntaxError):
    """A name that is no operator, variable or slot (made by ``lang.ops.unknown_name``, which
    knows the names to suggest)."""


class ArityError(DSLError):
    """An operator was given the wrong number of arguments."""


class SlotTypeError(DSLError):
    """A slot (wb1/wb2/wb3) used as a tensor, or a tensor where a linear expects a slot."""


class InputTooLargeError(DSLError):
    """The text is longer than the parser accepts."""


class NestingTooDeepError(DSLError):
    """Parentheses or AST nesting deeper than the limit."""


class ValidityError(DSLError):
    """A well-formed expression breaks a rule of the FFN search space (see ``validity.py``)."""

    rule = "valid"


class SlotCountError(ValidityError):
    rule = "one-wb1-one-wb2"


class SlotOrderError(ValidityError):
    rule = "wb1-before-wb2"


class LinearMismatchError(ValidityError):
    rule = "same-linear-XY"


class NestedActivationError(ValidityError):
    rule = "no-nested-activation"


class NestedLinearError(ValidityError):
    rule = "no-nested-linear"


class UnreachableInputError(ValidityError):
    rule = "x-reachable"


class OutputError(ValidityError):
    rule = "output-shape"


class WidthError(ValidityError):
    rule = "output-width"
