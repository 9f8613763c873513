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

from exprsearch.errors import DSLError, DSLSyntaxError, ExprSearchError, SlotTypeError, ValidityError

from .expr import Expr, ModelSpec, Slot
from .syntax import LayerItem, ModelHeader, SourceMap, parse_items, parse_layers
from .validity import validate

__all__ = ["parse", "parse_spec", "read_spec", "check"]


def check(e: Expr, text: str | None = None, *, strict: bool = True, layer: int | None = None,
          item: int | None = None) -> Expr:
    """Validate ``e``; on failure locate the offending node in ``text`` (if given) for the caret.

    ``layer`` (0-based) names the layer in the message; ``item`` is its position among the
    text's items (it differs when a ``model(...)`` header comes first)."""
    item = layer if item is None else item
    try:
        return validate(e, strict=strict)
    except ValidityError as err:
        if text is not None:
            spans = SourceMap()
            parse_layers(text, spans)
            err.located(text, spans.locate(err.node, item or 0, err.within) or spans.layers[item or 0])
        if layer is not None:
            err.message = f"layer {layer + 1}: {err.message}"
        raise


def _tensors(items: list, text: str) -> list:
    """``items``, once each FFN is known to be a tensor: a lone slot (``wb1``) names weights and
    has no value (the AST allows it, as a node does; a layer may not be one)."""
    for i, item in enumerate(items):
        e = item.ffn if isinstance(item, LayerItem) else item
        if isinstance(e, Slot):
            spans = SourceMap()
            parse_items(text, spans)
            raise SlotTypeError(f"slot '{e}' alone is no FFN: a slot is only valid as a linear's second argument",
                                text=text, span=spans.locate(e, i) or spans.layers[i],
                                hint="an FFN maps x, e.g. linear1_1(gelu(linear1_1(x,wb1)),wb2)")
    return items


def parse(text: str, *, strict: bool = True, validate: bool = True) -> Expr:
    """Text -> one validated FFN expression.

    ``strict=False`` applies the relaxed rules; ``validate=False`` only checks syntax and typing.
    """
    layers = _tensors(parse_items(text), text)
    if any(not isinstance(i, Expr) for i in layers):
        raise DSLSyntaxError("layer(...) and model(...) items make a model spec, not one expression",
                             text=text, span=(0, 1), hint="use parse_spec() / a spec file")
    if len(layers) != 1:
        raise DSLSyntaxError(f"expected one expression, got a model spec of {len(layers)} layers",
                             text=text, span=(0, 1), hint="use parse_spec() for per-layer specs")
    return check(layers[0], text, strict=strict) if validate else layers[0]


def parse_spec(text: str, *, strict: bool = True, validate: bool = True) -> ModelSpec:
    """Text -> a per-layer model spec: one item per line, or ``[i1; i2; ...]``, where an item is an
    FFN expression or ``layer(attn=mha(heads=6), ffn=EXPR)``, optionally after
    ``model(layers=N, hidden=H)`` (one layer item with ``layers=N`` applies to all N layers)."""
    items = _tensors(parse_items(text), text)
    header = next((i for i in items if isinstance(i, ModelHeader)), None)
    if header is not None and not isinstance(items[0], ModelHeader) or \
            sum(isinstance(i, ModelHeader) for i in items) > 1:
        raise DSLSyntaxError("model(...) may appear once, as the first item", text=text, span=(0, 1))
    layers = [i for i in items if not isinstance(i, ModelHeader)]
    if not layers:
        raise DSLSyntaxError("the model spec has no layers", text=text, span=(0, 1))
    exprs = [i.ffn if isinstance(i, LayerItem) else i for i in layers]
    if validate:
        offset = 1 if header is not None else 0
        for i, e in enumerate(exprs):
            check(e, text, strict=strict, layer=i if len(items) > 1 else None, item=i + offset)
    attn = tuple(i.attn if isinstance(i, LayerItem) else None for i in layers)
    spec = ModelSpec(tuple(exprs), attn, header.hidden if header else None)
    if header is not None and header.layers is not None:
        spec = spec.broadcast(header.layers)
    return spec


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
