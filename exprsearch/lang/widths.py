"""expression + widths of the model --> channel width of every node: the one width rule.

Input: an expression, the model width H and ``inner(Y)`` = d = D // Y.  Output: each node's
number of channels.  The rule (the reference's, read by validity, the numeric evaluator and the
compiler): ``x`` is H wide; a ``wb1`` linear (and a gate's ``wb3``) outputs d = D // Y, a ``wb2``
linear H; a unary op keeps its operand's width; a binary op on operands of different widths works
on the first min(w1, w2) channels of each.  Invariant: a pure function of the structure, memoised per call.

>>> from exprsearch.lang.validity import parse_one
>>> e = parse_one("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)")
>>> w = node_widths(e, 8, lambda y: 32 // y)
>>> [w[n] for n in (e, e.args[0], e.args[0].args[0])]
[8, 8, 8]
>>> symbolic_width(e.args[0].args[0]), symbolic_width(e.args[0].args[0].args[0])
('min(H,d)', 'd')
>>> [linear_width(slot, 3, 384, 384) for slot in ("wb1", "wb2", "wb3")]
[128, 384, 128]
"""
from __future__ import annotations

from typing import Callable

from .expr import Expr
from .ops import Kind

__all__ = ["node_widths", "symbolic_width", "linear_width", "binary_width", "INNER_SLOTS"]

INNER_SLOTS = frozenset({"wb1", "wb3"})  # slots whose linear projects to the inner width d (wb2: to H)


def linear_width(slot: str, ratio: int, hidden: int, base: int) -> int:
    """Output channels of a ``linearX_Y`` with weight slot ``slot``: d = D // Y for wb1 and wb3
    (a gate), else H."""
    return max(1, base // ratio) if slot in INNER_SLOTS else hidden


def binary_width(a: int, b: int) -> int:
    """Channels a binary op works on: the first min(w1, w2) of each operand."""
    return min(a, b)


def node_widths(e: Expr, hidden: int, inner: Callable[[int], int]) -> dict[Expr, int]:
    """Channel width of every node of ``e`` (children before parents; slots are left out)."""
    w: dict[Expr, int] = {}
    stack: list[tuple[Expr, bool]] = [(e, False)]
    while stack:  # post-order without recursion: expressions may be deep
        n, ready = stack.pop()
        if n in w or n.kind is Kind.SLOT:
            continue
        k = n.kind
        if not ready and k is not Kind.VAR:
            stack.append((n, True))
            stack.extend((a, False) for a in n.args if a.kind is not Kind.SLOT and a not in w)
            continue
        if k is Kind.VAR:
            w[n] = hidden
        elif k is Kind.LINEAR:
            w[n] = inner(n.op.ratio) if n.args[1].name in INNER_SLOTS else hidden
        elif k is Kind.UNARY:
            w[n] = w[n.args[0]]
        else:
            w[n] = binary_width(*(w[a] for a in n.args))
    return w


def symbolic_width(e: Expr) -> str:
    """'H', 'd' or 'min(H,d)': the rule evaluated once with H > d and once with H < d."""
    wide, narrow = node_widths(e, 2, lambda y: 1)[e], node_widths(e, 1, lambda y: 2)[e]
    return {(2, 1): "H", (1, 2): "d"}.get((wide, narrow), "min(H,d)")
