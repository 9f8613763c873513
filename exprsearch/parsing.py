"""text --> validated AST (or model spec): the front door of the pipeline.

Input: DSL text.  Output: a validated ``Expr`` (``parse``) or ``ModelSpec`` (``parse_spec``).
Invariant: every error is a ``DSLError`` with the source line and a caret under the bad columns.

>>> str(parse("linear1_1( gelu( linear1_1(x, wb1) ), wb2)"))
'linear1_1(gelu(linear1_1(x,wb1)),wb2)'
>>> len(parse_spec("[linear1_1(gelu(linear1_1(x,wb1)),wb2); linear1_2(relu(linear1_2(x,wb1)),wb2)]"))
2
"""
from __future__ import annotations

from pathlib import Path

from .errors import DSLError, DSLSyntaxError, ExprSearchError, ValidityError
from .expr import Expr, ModelSpec
from .syntax import SourceMap, parse_layers
from .validity import validate

__all__ = ["parse", "parse_spec", "read_spec", "check"]


def check(e: Expr, text: str | None = None, *, strict: bool = True, layer: int | None = None) -> Expr:
    """Validate ``e``; on failure locate the offending node in ``text`` (if given) for the caret."""
    try:
        return validate(e, strict=strict)
    except ValidityError as err:
        if text is not None:
            spans = SourceMap()
            parse_layers(text, spans)
            err.located(text, spans.locate(err.node, layer or 0, err.within) or spans.layers[layer or 0])
        if layer is not None:
            err.message = f"layer {layer + 1}: {err.message}"
        raise


def parse(text: str, *, strict: bool = True, validate: bool = True) -> Expr:
    """Text -> one validated FFN expression.

    ``strict=False`` applies the relaxed rules; ``validate=False`` only checks syntax and typing.
    """
    layers = parse_layers(text)
    if len(layers) != 1:
        raise DSLSyntaxError(f"expected one expression, got a model spec of {len(layers)} layers",
                             text=text, span=(0, 1), hint="use parse_spec() for per-layer specs")
    return check(layers[0], text, strict=strict) if validate else layers[0]


def parse_spec(text: str, *, strict: bool = True, validate: bool = True) -> ModelSpec:
    """Text -> a per-layer model spec (one expression per line, or ``[e1; e2; ...]``)."""
    layers = parse_layers(text)
    if validate:
        for i, e in enumerate(layers):
            check(e, text, strict=strict, layer=i if len(layers) > 1 else None)
    return ModelSpec(tuple(layers))


def read_spec(path: str | Path, *, strict: bool = True) -> ModelSpec:
    """Read a model-spec file; errors name the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ExprSearchError(f"cannot read model spec {p}: {err}") from None
    try:
        return parse_spec(text, strict=strict)
    except DSLError as err:
        err.origin = str(p)
        if err.text is None:
            err.message = f"{p}: {err.message}"
        raise
