"""DSL text guards and messages: size/nesting limits before parsing, and lark's errors turned
into one DSL error with a caret under the bad column and the expected tokens in words.

>>> try:
...     _prepare("(" * 101 + "x")
... except Exception as e:
...     print(type(e).__name__)
NestingTooDeepError
"""
from __future__ import annotations

import re
from typing import Iterable

from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
)

from exprsearch.errors import (
    DSLError,
    DSLSyntaxError,
    InputTooLargeError,
    NestingTooDeepError,
)

from .ops import ALL_NAMES, unknown_name

__all__ = ["MAX_CHARS", "MAX_NESTING", "FIELD_MAX", "prepare", "syntax_error"]

MAX_CHARS = 100_000   # longest text accepted (a 24-layer spec of long expressions is ~5 kB)
MAX_NESTING = 100     # deepest parenthesis nesting accepted
# largest value of each model(...) / attention field: far above any BERT, far below a spec that
# fills memory (model(layers=10**8) is a 1 GB tuple) or a number no C integer holds
FIELD_MAX = {"layers": 256, "hidden": 16_384, "heads": 256, "kernel": 512}
_COMMENT = re.compile(r"#[^\n]*")  # the grammar's COMMENT: to the end of the line


def _prepare(text: str) -> str:
    r"""Size and nesting limits; comments become spaces and newlines inside parentheses become
    spaces (columns kept).  A ``(`` or ``)`` inside a ``#`` comment counts for nothing: it may not
    join the following lines to an open parenthesis.

    >>> _prepare("x # (\ngelu(x)")
    'x    \ngelu(x)'
    """
    if not isinstance(text, str):
        raise DSLSyntaxError(f"expected expression text, got {type(text).__name__}")
    if len(text) > MAX_CHARS:
        raise InputTooLargeError(f"input is {len(text):,} characters; the limit is {MAX_CHARS:,}",
                                 text=text, span=(MAX_CHARS, MAX_CHARS + 1),
                                 hint="a model spec holds one expression per layer; split huge inputs")
    if "#" in text:
        text = _COMMENT.sub(lambda m: " " * len(m.group()), text)
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
          "LINEAR_OP": "linearX_Y", "VAR": "x", "SLOT": "wb1, wb2 or wb3", "RPAR": "')'",
          "LPAR": "'('", "COMMA": "','", "SEP": "';' or a new line", "LSQB": "'['",
          "RSQB": "']'", "$END": "the end of the input",
          "ATTN_OP": "mha or lsra", "FIELD": "attn or ffn", "KEY": "heads, kernel, layers or hidden",
          "INT": "a whole number", "EQUAL": "'='", "LAYER": "layer(...)", "MODEL": "model(...)"}
_EXPR_START = {"UNARY_OP", "BINARY_OP", "LINEAR_OP", "VAR", "SLOT"}
_WORD = re.compile(r"[A-Za-z0-9_]+")


def _expected(names: Iterable[str]) -> str:
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
    if word and word.end() < len(text) and not text[word.end()].isascii():  # "gélu": the 'é' is the error
        ch = text[word.end()]
        return DSLSyntaxError(f"unexpected character {ch!r} (U+{ord(ch):04X}); names are ASCII letters, "
                              "digits and '_'", text=text, span=(word.end(), word.end() + 1))
    if word and word.end() > pos and word.group() not in ALL_NAMES and word.group()[0].isalpha():
        return unknown_name(word.group(), text=text, span=word.span())
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



prepare, syntax_error = _prepare, _syntax_error
