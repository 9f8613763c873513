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
from pathlib import Path
from typing import Any

import lark
from lark import Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .errors import (DSLError, DSLSyntaxError, ExprSearchError, InputTooLargeError,
                     NestingTooDeepError, UnknownNameError)
from .expr import Expr, node
from .ops import ALL_NAMES

__all__ = ["grammar_text", "grammar_path", "parse_tree", "to_ast", "parse_layers", "Spans", "SourceMap",
           "MAX_CHARS", "MAX_NESTING"]

MAX_CHARS = 100_000   # longest text accepted (a 24-layer spec of long expressions is ~5 kB)
MAX_NESTING = 100     # deepest parenthesis nesting accepted



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


def grammar_path() -> Path:
    """Where ``ffn.lark`` lives: inside the installed package, else the checkout's ``grammar/``."""
    try:
        res = importlib.resources.files("exprsearch._grammar").joinpath("ffn.lark")
        if res.is_file():
            return Path(str(res))
    except ModuleNotFoundError:
        pass
    path = Path(__file__).resolve().parent.parent / "grammar" / "ffn.lark"
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

    def var(self, c: list) -> Expr:
        tok = c[0]
        return self._note(node(str(tok)), (tok.start_pos, tok.end_pos) if self.spans is not None else None)

    slot = var

    def start(self, c: list) -> list[Expr]:
        if self.spans is not None:
            self.spans.layers = list(self._stack)
        return [e for e in c if isinstance(e, Expr)]


_NAMED_TERMINAL = re.compile(r"^([A-Z][A-Z_0-9]*)(\.\d+)?\s*:", re.M)


def _fast_call(c: list) -> Expr:
    return node(c[0], *c[1:-1])


def _fast_leaf(c: list) -> Expr:
    return node(c[0])


def _fast_start(c: list) -> list[Expr]:
    return c


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
                           None if arg.options.expand1 and len(arg.expansion) == 1 else _FAST_ACTIONS[origin])
                    row[name] = (len(arg.expansion), origin, act)

    def fast(self, text: str) -> list[Expr] | None:
        """The fast path; ``None`` means "ask the lark path" (an error or something unusual)."""
        tokens = [(m.lastgroup, m.group()) for m in self.lexer.finditer(text)]
        if sum(len(v) for _, v in tokens) != len(text):
            return None  # a character no terminal matches
        tokens.append(("$END", ""))
        actions, goto, keep, ignore, end = self.actions, self.goto, self.keep, self.ignore, self.end
        states, values = [self.start], []
        try:
            for ttype, value in tokens:
                if ttype in ignore:
                    continue
                if ttype not in keep:
                    value = _DROP  # type: ignore[assignment]
                while True:
                    act = actions[states[-1]].get(ttype)  # type: ignore[arg-type]
                    if act.__class__ is int:
                        states.append(act)  # type: ignore[arg-type]
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
                    flat = []
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


def _prepare(text: str) -> str:
    """Size and nesting limits; newlines inside parentheses become spaces (columns kept)."""
    if not isinstance(text, str):
        raise DSLSyntaxError(f"expected expression text, got {type(text).__name__}")
    if len(text) > MAX_CHARS:
        raise InputTooLargeError(f"input is {len(text):,} characters; the limit is {MAX_CHARS:,}",
                                 text=text, span=(MAX_CHARS, MAX_CHARS + 1),
                                 hint="a model spec holds one expression per layer; split huge inputs")
    if "\n" not in text and text.count("(") <= MAX_NESTING:
        return text
    out, depth = list(text), 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
            if depth > MAX_NESTING:
                raise NestingTooDeepError(f"parentheses nest deeper than {MAX_NESTING} levels",
                                          text=text, span=(i, i + 1))
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == "\n" and depth:
            out[i] = " "
    return "".join(out)


_HUMAN = {"UNARY_OP": "a unary operator", "BINARY_OP": "a binary operator",
          "LINEAR_OP": "linearX_Y", "VAR": "x", "SLOT": "wb1 or wb2", "RPAR": "')'",
          "LPAR": "'('", "COMMA": "','", "SEP": "';' or a new line", "LSQB": "'['",
          "RSQB": "']'", "$END": "the end of the input"}
_EXPR_START = {"UNARY_OP", "BINARY_OP", "LINEAR_OP", "VAR", "SLOT"}
_WORD = re.compile(r"[A-Za-z0-9_]+")


def _expected(names: set[str]) -> str:
    names = set(names)
    parts = []
    if _EXPR_START <= names:
        parts.append("an expression")
        names -= _EXPR_START
    parts += sorted(_HUMAN.get(n, n) for n in names)
    return " or ".join(parts) if parts else "nothing"


def _syntax_error(err: UnexpectedInput, text: str) -> DSLError:
    pos = err.pos_in_stream if err.pos_in_stream is not None else len(text)
    if isinstance(err, UnexpectedToken) and err.token.type == "$END" or isinstance(err, UnexpectedEOF):
        pos = len(text.rstrip())
        return DSLSyntaxError(f"unexpected end of input; expected {_expected(err.expected)}",
                              text=text, span=(pos, pos + 1))
    start = pos
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_") and text[start - 1].isascii():
        start -= 1
    word = _WORD.match(text, start)
    if word and word.end() > pos and word.group() not in ALL_NAMES and word.group()[0].isalpha():
        return UnknownNameError.for_name(word.group(), text=text, span=word.span())
    if isinstance(err, UnexpectedCharacters):
        ch = text[pos]
        expected = _expected(err.allowed) if err.allowed else "an expression"
        return DSLSyntaxError(f"unexpected character {ch!r}; expected {expected}",
                              text=text, span=(pos, pos + 1))
    tok = err.token  # type: ignore[attr-defined]
    shown = str(tok) if len(str(tok)) <= 20 else str(tok)[:17] + "..."
    expected = getattr(err, "accepts", None) or err.expected  # type: ignore[attr-defined]
    return DSLSyntaxError(f"unexpected {shown!r}; expected {_expected(expected)}",
                          text=text, span=(pos, pos + max(1, len(str(tok)))))


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


def parse_layers(text: str, spans: Spans | None = None) -> list[Expr]:
    """Text -> one AST per layer.  Fast path first; the lark path for errors or when spans are wanted."""
    prepared = _prepare(text)
    if spans is None:
        result = _get().fast(prepared)
        if result is not None:
            return result
    return to_ast(parse_tree(text), text, spans)
