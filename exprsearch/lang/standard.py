"""the standard BERT FFN: one constant of the language, and the one test for it.

Input: nothing (the constants), or a parsed ``ModelSpec``.  Output: ``STANDARD_FFN`` -- BERT's
own FFN ``linear1_1(gelu(linear1_1(x,wb1)),wb2)`` (with D = 4H), the baseline every leaderboard
shows -- built from nodes, never parsed; ``standard_ffn(X, Y)`` its ``linearX_Y`` form (what the
supernet warm-up samples); ``is_standard(spec)``: every layer is the standard FFN with standard
attention.  Invariant: AST nodes are interned, so the test is identity.

>>> str(STANDARD_FFN), str(standard_ffn(2, 3))
('linear1_1(gelu(linear1_1(x,wb1)),wb2)', 'linear2_3(gelu(linear2_3(x,wb1)),wb2)')
>>> is_standard(STANDARD_SPEC.broadcast(6)), is_standard(ModelSpec((standard_ffn(1, 2),)))
(True, False)
"""
from __future__ import annotations

from .expr import WB1, WB2, X, Expr, ModelSpec, node
from .ops import linear_op

__all__ = ["STANDARD_FFN", "STANDARD_SPEC", "standard_ffn", "is_standard"]


def standard_ffn(blocks: int = 1, ratio: int = 1) -> Expr:
    """``linearX_Y(gelu(linearX_Y(x,wb1)),wb2)`` for X = blocks, Y = ratio."""
    lin = linear_op(blocks, ratio)
    return node(lin, node("gelu", node(lin, X, WB1)), WB2)


STANDARD_FFN: Expr = standard_ffn()
STANDARD_SPEC: ModelSpec = ModelSpec((STANDARD_FFN,))  # one layer: broadcast it to the model's depth


def is_standard(spec: ModelSpec) -> bool:
    """Every layer the standard FFN, with standard attention (any depth)."""
    return spec.attn is None and all(e is STANDARD_FFN for e in spec.layers)
