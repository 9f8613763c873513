"""AST + probe --> where its values are numerically saturated: the evidence a numeric merge may use.

Input: an expression and a ``Probe``.  Output: a boolean mask over its output values (points x
channels), True where the value does not carry what it depends on at the comparison tolerance:
an operand that matters there can move by ``STEP`` (relative) without the value moving by more than
``RTOL`` |value| + ``ATOL`` -- ``sigmoid`` of 40, of 1e-20 or of an overflowed ``square`` tower,
``tanh`` of 10, an ``add`` whose small term is absorbed, a linear whose sum swallows a term --,
or the value or an operand that matters is not finite; and every value computed from such a
value.  An operand that does not matter *exactly* (the op table's ``ignores``: ``relu`` of a
negative, the smaller operand of ``max``, ``mul`` by an exact zero) passes nothing on.
Invariant: two expressions that agree at probe points only where one of them is saturated have
not been shown equal: ``numeric.numerically_equal`` asks for agreement everywhere *and* enough
points saturated in neither (issue 31: towers ``sigmoid(square^12(x))`` and ``square^13`` agree
at every probe point, yet differ by 0.14 at x = 1.0001).

>>> from .validity import parse_one
>>> from .numeric import Probe
>>> p = Probe(points=8)
>>> s = saturated(parse_one("sigmoid(x)"), p)  # rows 3 and 7: |x| ~ 50, sigmoid is 0 or 1 there
>>> int(s[[0, 1, 4, 5]].sum()), int(s[[3, 7]].sum())
(0, 16)
>>> e = parse_one("sigmoid(" + "square(" * 12 + "x" + ")" * 13)
>>> bool(saturated(e, p)[1:].all())
True
"""
from __future__ import annotations

import torch

from .expr import Expr
from .numeric import ATOL, Probe, evaluate
from .ops import Kind
from .widths import binary_width

__all__ = ["saturated", "evidence", "STEP", "RTOL"]

STEP = 1e-3   # relative move of an operand that must show in the value
RTOL = 1e-9   # the relative tolerance of numeric agreement (numeric.numerically_equal)


def _tol(v: torch.Tensor) -> torch.Tensor:
    return RTOL * v.abs() + ATOL


def _unmoved(fn, args: list[torch.Tensor], i: int, v: torch.Tensor) -> torch.Tensor:
    """Where moving operand ``i`` by +-STEP (relative) leaves ``fn``'s value within tolerance."""
    out = torch.ones_like(v, dtype=torch.bool)
    for s in (1 + STEP, 1 - STEP):
        moved = list(args)
        moved[i] = args[i] * s
        w = fn(*moved)
        out &= ((w - v).abs() <= _tol(v)) | (w == v)
    return out


def _linear(p: Probe, n: Expr, a: torch.Tensor, bad_in: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    wt, _ = p.weights(n.args[1].name, n.op.ratio, a.shape[-1])
    k = wt.shape[0]
    used = a[:, :k]
    terms = used.abs()[:, :, None] * wt.abs()[None]            # points x inputs x outputs
    absorbed = ((terms * STEP <= _tol(v)[:, None, :]) & (used != 0)[:, :, None]).any(1)
    return ~torch.isfinite(v) | bad_in[:, :k].any(1, keepdim=True) | absorbed


def _scan(e: Expr, probe: Probe, bad: dict[Expr, torch.Tensor], used: dict[Expr, float]) -> torch.Tensor:
    """Fill ``bad`` (node -> saturated mask) and ``used`` (node -> share of its values that are
    clean and that an operand moves: how much of the operation the probe exercises) for ``e``."""
    hit = bad.get(e)
    if hit is not None:
        return hit
    v = evaluate(e, probe)
    k = e.op.kind
    if k is Kind.VAR:
        out = ~torch.isfinite(v)
    elif k is Kind.LINEAR:
        a = e.args[0]
        out = _linear(probe, e, evaluate(a, probe), _scan(a, probe, bad, used), v)
        used[e] = float((~out).float().mean())
    else:
        vals = [evaluate(a, probe) for a in e.args]
        bads = [_scan(a, probe, bad, used) for a in e.args]
        w = v.shape[-1] if k is Kind.UNARY else binary_width(*(x.shape[-1] for x in vals))
        vals, bads = [x[..., :w] for x in vals], [b[..., :w] for b in bads]
        ignored = e.op.ignores(*vals) if e.op.ignores is not None else (None,) * len(vals)
        out = ~torch.isfinite(v)
        moves = torch.zeros_like(out)  # some operand moves the value
        for i, (val, b) in enumerate(zip(vals, bads)):
            still = _unmoved(e.op.torch_fn, vals, i, v)
            moves |= ~still
            matters = b | ((val != 0) & still)
            ig = ignored[i]
            out |= matters if ig is None else matters & ~ig
        used[e] = float((moves & ~out).float().mean())
    bad[e] = out
    return out


def saturated(e: Expr, probe: Probe) -> torch.Tensor:
    """Points x channels: True where ``e``'s value is saturated (see the module docstring)."""
    return _scan(e, probe, {}, {})


def evidence(e: Expr, probe: Probe) -> tuple[torch.Tensor, float]:
    """(``saturated(e, probe)``, the least share of clean values that an operand moves, over
    ``e``'s operations): an operation whose values are all saturated, or flat -- ``sqrelu`` of
    negatives and of 0 --, was not exercised, however many output values are clean.

    >>> from .validity import parse_one
    >>> evidence(parse_one("sqrelu(" * 12 + "x" + ")" * 12), Probe(points=64))[1] < 0.02  # x^4096 > 0
    True
    """
    key = ("evidence", e)
    hit = probe._cache.get(key)
    if hit is None:
        bad: dict[Expr, torch.Tensor] = {}
        used: dict[Expr, float] = {}
        hit = probe._cache[key] = (_scan(e, probe, bad, used), min(used.values(), default=1.0))
    return hit
