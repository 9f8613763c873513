"""AST --> sympy: the algebra of an expression, and proofs of equality.

Input: an expression.  Output: a sympy expression in the symbol ``x`` where each linear is an
opaque function (``lin1_2_wb1(...)``): the elementwise algebra.  Invariant: built only from the op
table's sympy builders.  Channels are treated elementwise, so widths are not modelled: ``dedup``
only asks sympy about expressions whose numeric fingerprints (which do model widths) agree.

>>> from .validity import parse_one
>>> to_sympy(parse_one("mul(x,add(x,tanh(x)))"))
x*(x + tanh(x))
>>> prove_equal(parse_one("add(mul(x,x),mul(x,tanh(x)))"), parse_one("mul(x,add(x,tanh(x)))"))
True
"""
from __future__ import annotations

from functools import lru_cache

import sympy

from .expr import Expr
from .ops import Kind

__all__ = ["to_sympy", "prove_equal", "X_SYMBOL"]

X_SYMBOL = sympy.Symbol("x", real=True)


@lru_cache(maxsize=50_000)
def to_sympy(e: Expr) -> sympy.Expr:
    """The elementwise algebra of ``e`` (linears are opaque functions of their input)."""
    k = e.op.kind
    if k is Kind.VAR:
        return X_SYMBOL
    if k is Kind.LINEAR:
        return sympy.Function(f"lin{e.op.blocks}_{e.op.ratio}_{e.args[1].name}", real=True)(
            to_sympy(e.args[0]))
    return e.op.sympy_fn(*(to_sympy(a) for a in e.args))  # type: ignore[misc]


def prove_equal(a: Expr, b: Expr, simplify: bool = True) -> bool:
    """True if sympy proves ``a == b`` as functions; False means "not proved" (not "different").
    ``simplify=False`` tries only ``expand`` (milliseconds); ``simplify`` can take seconds."""
    try:
        diff = sympy.expand(to_sympy(a) - to_sympy(b))
        if diff == 0:
            return True
        return simplify and bool(sympy.simplify(diff) == 0)
    except (TypeError, ValueError, RecursionError, NotImplementedError, AttributeError):
        return False
