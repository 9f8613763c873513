"""text --grammar/ffn.lark--> parse tree --> typed AST nodes.

Input: DSL text.  Output: one AST per layer (``parse_layers``) or the raw lark tree
(``parse_tree``).  Invariant: ``grammar/ffn.lark`` is the only syntax.  Two paths read it:

* the fast path drives the LALR automaton that lark generates from the grammar with a regex lexer
  built from the grammar's own terminals, calling the same AST builder callbacks.  No lark
  ``Token`` or ``Tree`` objects are made, which is ~5x faster than lark's own loop;
* the lark path builds a ``Tree`` with positions; ``to_ast`` turns it into the AST and records a
  source span per node.  Every error, and the span of any later validity error, comes from it.

The fast path gives up on anything unusual and the lark path then produces the answer or the
error, so both accept exactly the same language (tested on a fuzz corpus).

>>> [str(e) for e in parse_layers("x; gelu( x )")]
['x', 'gelu(x)']
"""
from __future__ import annotations

import importlib.resources
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lark
from lark import Transformer
from lark.exceptions import UnexpectedInput

from exprsearch.errors import DSLError, DSLSyntaxError, ExprSearchError

from .dsl_errors import FIELD_MAX, MAX_CHARS, MAX_NESTING
from .dsl_errors import prepare as _prepare
from .dsl_errors import syntax_error as _syntax_error
from .expr import AttnSpec, Expr, node

__all__ = ["grammar_text", "grammar_path", "parse_tree", "to_ast", "parse_layers", "parse_items", "LayerItem",
           "ModelHeader", "Spans", "SourceMap",
           "MAX_CHARS", "MAX_NESTING"]




class SourceMap:
    """Where each AST node occurs in the text: every occurrence, and each layer's span."""

    def __init__(self) -> None:
        self.occurrences: dict[Expr, list[tuple[int, int]]] = {}
        self.layers: list[tuple[int, int]] = []

    def add(self, e: Expr, span: tuple[int, int]) -> None:
        self.occurrences.setdefault(e, []).append(span)

    def locate(self, e: Expr, layer: int = 0, within: Expr | None = None) -> tuple[int, int] | None:
        """First span of ``e`` inside layer ``layer`` (or anywhere if layers are unknown), and
        inside an occurrence of ``within`` if given."""
        lo, hi = self.layers[layer] if layer < len(self.layers) else (0, 1 << 62)
        if within is not None:
            outer = self.locate(within, layer)
            if outer is not None:
                lo, hi = outer[0] + 1, outer[1]
        return next((s for s in self.occurrences.get(e, ()) if lo <= s[0] and s[1] <= hi), None)


Spans = SourceMap


@dataclass(frozen=True)
class LayerItem:
    """``layer(attn=..., ffn=...)`` as parsed (``parsing.parse_spec`` builds the ModelSpec)."""

    attn: AttnSpec | None
    ffn: Expr


@dataclass(frozen=True)
class ModelHeader:
    """``model(layers=N, hidden=H)`` as parsed."""

    layers: int | None
    hidden: int | None


def grammar_path() -> Path:
    """Where ``ffn.lark`` lives: inside the installed package, else the checkout's ``grammar/``."""
    try:
        res = importlib.resources.files("exprsearch._grammar").joinpath("ffn.lark")
        if res.is_file():
            return Path(str(res))
    except ModuleNotFoundError:
        pass
    path = Path(__file__).resolve().parents[2] / "grammar" / "ffn.lark"
    if not path.is_file():
        raise ExprSearchError(f"grammar file not found (looked in the package and at {path})")
    return path


def grammar_text() -> str:
    return grammar_path().read_text(encoding="utf-8")


class _Builder(Transformer):
    """Grammar rule -> AST node.  Tokens arrive as ``str`` (fast path) or lark ``Token``."""

    def __init__(self, spans: Spans | None = None) -> None:
        super().__init__()
        self.spans = spans
        self._stack: list[tuple[int, int]] = []  # spans of finished subtrees, in source order

    def _note(self, e: Expr, span: tuple[int, int] | None) -> Expr:
        if self.spans is not None and span is not None:
            self.spans.add(e, span)
            self._stack.append(span)
        return e

    def _call(self, c: list) -> Expr:
        args = c[1:-1]
        tracking = self.spans is not None
        span = (c[0].start_pos, c[-1].end_pos) if tracking else None
        arg_spans = self._stack[len(self._stack) - len(args):] if tracking else []
        if tracking:
            del self._stack[len(self._stack) - len(args):]
        try:
            e = node(str(c[0]), *args)
        except DSLError as err:
            if tracking and err.span is None:
                at = err.arg
                err.span = arg_spans[at] if at is not None and at < len(arg_spans) else span
            raise
        return self._note(e, span)

    unary = binary = linear = _call

    # -- layer items and model fields (exprsearch.lang.parsing assembles them into a ModelSpec) ------
    @staticmethod
    def _err(msg: str, c: list) -> DSLSyntaxError:
        first, last = c[0], c[-1]
        span = (first.start_pos, last.end_pos) if hasattr(first, "start_pos") and hasattr(last, "end_pos") else None
        return DSLSyntaxError(msg, span=span)

    def kwarg(self, c: list) -> tuple:
        key, digits, limit = str(c[0]), str(c[1]).lstrip("0") or "0", FIELD_MAX[str(c[0])]
        if len(digits) > len(str(limit)) or int(digits) > limit:  # int() of 4,301+ digits raises
            shown = digits if len(digits) <= 20 else digits[:17] + "..."
            raise DSLError(f"{key}={shown} is too large; the limit is {limit:,}",
                           span=(c[1].start_pos, c[1].end_pos))
        return (key, int(digits), c[0])

    def attn(self, c: list) -> AttnSpec:
        kw = {k: v for k, v, _ in (x for x in c[1:-1] if x is not None)}
        bad = set(kw) - {"heads", "kernel"}
        if bad:
            raise self._err(f"{c[0]}() takes heads= and kernel=, not {', '.join(sorted(bad))}", c)
        if str(c[0]) == "mha" and "kernel" in kw:
            raise self._err("mha() has no kernel; kernel= belongs to lsra()", c)
        for k, v in kw.items():
            if v < 1:
                raise self._err(f"{c[0]}(): {k} must be at least 1", c)
        if kw.get("kernel", 1) % 2 == 0:
            raise self._err("lsra(): kernel must be odd (a same-length convolution)", c)
        return AttnSpec(str(c[0]), kw.get("heads"), kw.get("kernel"))

    def field(self, c: list) -> tuple:
        return (str(c[0]), c[1], c[0])

    def layer(self, c: list) -> LayerItem:
        fields = {name: value for name, value, _ in c[1:-1]}
        n_exprs = sum(isinstance(v, Expr) for _, v, _ in c[1:-1])
        if "ffn" not in fields or not isinstance(fields["ffn"], Expr):
            raise self._err("layer(...) needs ffn=EXPRESSION", c)
        if "attn" in fields and not isinstance(fields["attn"], AttnSpec):
            raise self._err("attn= takes mha(...) or lsra(...)", c)
        item = LayerItem(fields.get("attn"), fields["ffn"])
        if self.spans is not None:
            del self._stack[len(self._stack) - n_exprs:]
            self._stack.append((c[0].start_pos, c[-1].end_pos))
        return item

    def model(self, c: list) -> ModelHeader:
        kw = {k: v for k, v, _ in c[1:-1]}
        bad = set(kw) - {"layers", "hidden"}
        if bad:
            raise self._err(f"model() takes layers= and hidden=, not {', '.join(sorted(bad))}", c)
        if any(v < 1 for v in kw.values()):
            raise self._err("model(): layers and hidden must be at least 1", c)
        if self.spans is not None:
            self._stack.append((c[0].start_pos, c[-1].end_pos))
        return ModelHeader(kw.get("layers"), kw.get("hidden"))

    def var(self, c: list) -> Expr:
        tok = c[0]
        return self._note(node(str(tok)), (tok.start_pos, tok.end_pos) if self.spans is not None else None)

    slot = var

    def start(self, c: list) -> list:
        if self.spans is not None:
            self.spans.layers = list(self._stack)
        return [e for e in c if isinstance(e, (Expr, LayerItem, ModelHeader))]


_NAMED_TERMINAL = re.compile(r"^([A-Z][A-Z_0-9]*)(\.\d+)?\s*:", re.M)


def _fast_call(c: list) -> Expr:
    return node(c[0], *c[1:-1])


def _fast_leaf(c: list) -> Expr:
    return node(c[0])


def _fast_start(c: list) -> list[Expr]:
    return c


class _NotFast(ExprSearchError):
    """A rule the fast path leaves to the lark path (layer items, model fields)."""


def _not_fast(c: list) -> Any:
    raise _NotFast()


# Semantic actions of the fast path, by rule name (the lark path's are the _Builder methods).
_FAST_ACTIONS = {"unary": _fast_call, "binary": _fast_call, "linear": _fast_call,
                 "var": _fast_leaf, "slot": _fast_leaf, "start": _fast_start}


class _Grammar:
    """Both parsers, built once from the grammar file (lazily: importing stays cheap)."""

    def __init__(self) -> None:
        text = grammar_text()
        self.tree_parser = lark.Lark(text, parser="lalr", propagate_positions=True)
        table = self.tree_parser.parser.parser.parser.parse_table
        named = set(m.group(1) for m in _NAMED_TERMINAL.finditer(text))
        terms = sorted(self.tree_parser.terminals, key=lambda t: (
            -t.priority, -t.pattern.max_width, -len(t.pattern.value), t.name))
        self.lexer = re.compile("|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in terms))
        self.ignore = frozenset(self.tree_parser.ignore_tokens)
        self.keep = frozenset(named) - {"SEP"}  # tokens the AST needs; anonymous ones are syntax only
        self.start = table.start_states["start"]
        self.end = table.end_states["start"]
        # Plain-str tables: shifts[state][token] -> state; reduces[state][token] -> (size, origin,
        # action); goto[state][rule] -> state.  action None: pass the single child up (?expr);
        # "splice": an inlined _rule (children join the parent's); else a function making the node.
        # Plain-str tables: actions[state][token] is an int (shift to that state) or a tuple
        # (size, origin, action) to reduce by; goto[state][rule] -> state.  action None: pass the
        # single child up (?expr); "splice": an inlined _rule whose children join the parent's;
        # else the function making the node.
        shift = lark.parsers.lalr_analysis.Shift
        self.actions: dict[int, dict[str, int | tuple]] = {}
        self.goto: dict[int, dict[str, int]] = {}
        for st, acts in table.states.items():
            row, go = self.actions.setdefault(st, {}), self.goto.setdefault(st, {})
            for tok, (kind, arg) in acts.items():
                name = str(tok)
                if kind is shift:
                    (row if name.isupper() or name == "$END" else go)[name] = arg
                else:
                    origin = str(arg.origin.name)
                    act = ("splice" if origin.startswith("_") else
                           None if arg.options.expand1 and len(arg.expansion) == 1
                           else _FAST_ACTIONS.get(origin, _not_fast))
                    row[name] = (len(arg.expansion), origin, act)

    def fast(self, text: str) -> list[Expr] | None:
        """The fast path; ``None`` means "ask the lark path" (an error or something unusual)."""
        tokens = [(m.lastgroup, m.group()) for m in self.lexer.finditer(text)]
        if sum(len(v) for _, v in tokens) != len(text):
            return None  # a character no terminal matches
        tokens.append(("$END", ""))
        actions, goto, keep, ignore, end = self.actions, self.goto, self.keep, self.ignore, self.end
        states: list[int] = [self.start]
        values: list[Any] = []
        try:
            for ttype, value in tokens:
                if ttype in ignore:
                    continue
                if ttype not in keep:
                    value = _DROP  # type: ignore[assignment]
                while True:
                    act = actions[states[-1]].get(ttype)  # type: ignore[arg-type]
                    if act.__class__ is int:
                        states.append(act)
                        values.append(value)
                        break
                    if act is None:
                        return None
                    size, origin, fn = act  # type: ignore[misc]
                    if fn is None:  # unit rule: the value stays, only the state changes
                        states[-1] = goto[states[-2]][origin]
                        continue
                    kids = values[-size:]
                    del states[-size:]
                    del values[-size:]
                    flat: list[Any] = []
                    for k in kids:
                        if k.__class__ is list:
                            flat.extend(k)
                        elif k is not _DROP:
                            flat.append(k)
                    values.append(flat if fn == "splice" else fn(flat))
                    states.append(goto[states[-1]][origin])
                    if ttype == "$END" and states[-1] == end:
                        return values[-1]
        except ExprSearchError:
            return None
        return None


_DROP = object()  # value of tokens the AST does not need


_grammar: _Grammar | None = None
_lock = threading.Lock()


def _get() -> _Grammar:
    global _grammar
    if _grammar is None:
        with _lock:
            if _grammar is None:
                _grammar = _Grammar()
    return _grammar


def parse_tree(text: str) -> lark.Tree:
    """The lark parse tree (with positions) of ``text``; raises DSL errors with a caret."""
    prepared = _prepare(text)
    try:
        return _get().tree_parser.parse(prepared)
    except UnexpectedInput as err:
        raise _syntax_error(err, text) from None


def to_ast(tree: lark.Tree, text: str | None = None, spans: Spans | None = None) -> list[Expr]:
    """Parse tree -> one AST per layer.  Fills ``spans`` (where each node occurs) if given."""
    try:
        return _Builder(spans if spans is not None else SourceMap()).transform(tree)
    except lark.exceptions.VisitError as err:
        inner = err.orig_exc
        if isinstance(inner, DSLError):
            raise (inner.located(text, inner.span) if text is not None else inner) from None
        raise


def parse_items(text: str, spans: Spans | None = None) -> list:
    """Text -> the spec's items: ``Expr``, ``LayerItem`` or ``ModelHeader``.  Fast path first
    (plain expressions); the lark path for errors, layer items, or when spans are wanted."""
    prepared = _prepare(text)
    if spans is None:
        result = _get().fast(prepared)
        if result is not None:
            return result
    return to_ast(parse_tree(text), text, spans)


def parse_layers(text: str, spans: Spans | None = None) -> list[Expr]:
    """Text -> one FFN expression per layer (layer(...) items contribute their ffn=)."""
    items = parse_items(text, spans)
    return [i.ffn if isinstance(i, LayerItem) else i for i in items if not isinstance(i, ModelHeader)]
