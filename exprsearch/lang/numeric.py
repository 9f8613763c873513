"""AST --> numbers: evaluation on fixed random probes, and the numeric fingerprint.

Input: an expression and a ``Probe`` (fixed random x and weights).  Output: the expression's
values, or a hash of them rounded (the fingerprint).  Invariant: evaluation uses the op table's
torch callables and the compiler's width rule, so it computes what a compiled FFN block computes
(before its residual and LayerNorm); equivalent expressions get the same fingerprint.

The width rule: ``wb1`` (and a gate's ``wb3``, with weights of its own) maps H -> d = D // Y,
``wb2`` maps d -> H; a binary op on operands of different widths uses the first min(w1, w2)
channels of each; a linear fed a narrower input than its slot's input width uses the first columns
of its weight (and a wider one, the first channels).

>>> from .validity import parse_one
>>> fingerprint(parse_one("max(x,tanh(x))")) == fingerprint(parse_one("max(tanh(x),x)"))
True
>>> geglu = "linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,{})),wb2)"
>>> fingerprint(parse_one(geglu.format("wb3"))) == fingerprint(parse_one(geglu.format("wb1")))
False
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from .expr import Expr
from .ops import RATIO_CHOICES, Kind
from .widths import binary_width, linear_width

__all__ = ["Probe", "evaluate", "evaluate_at", "fingerprint", "default_probe", "numerically_equal", "informative",
           "MIN_CLEAN", "MIN_EXERCISED"]

ATOL = 1e-12  # absolute tolerance of numeric agreement (and the least spread of informative values)
_CACHED_VALUES = 1_600_000  # rows of values a probe keeps (100,000 nodes at 16 points): ~150 MB


def probe_width(hidden: int, ratio: float) -> int:
    """The probe's D for a model with D / H = ``ratio``: the nearest to ``hidden * ratio`` at which
    every d = D // Y compares with H as the model's does (narrower, equal -- ratio Y -- or wider),
    so the probe cuts the widths the model cuts.

    >>> [probe_width(12, r) for r in (1.0, 4.0, 0.5, 1536 / 384, 400 / 384)]
    [12, 48, 6, 48, 13]
    """
    want = [(ratio > y) - (ratio < y) for y in RATIO_CHOICES]
    target = max(1, round(hidden * ratio))
    for step in range(4 * hidden * max(RATIO_CHOICES)):
        for c in (target - step, target + step):
            if c >= 1 and [(c // y > hidden) - (c // y < hidden) for y in RATIO_CHOICES] == want:
                return c
    return target


@dataclass(frozen=True)
class Probe:
    """Fixed random inputs and weights.  ``base_ratio`` = D / H of the model being searched: the
    probe keeps the order of d and H for every Y, which decides how width truncation behaves."""

    base_ratio: float = 1.0   # D / H (1 in the reference, 4 for a standard BERT)
    hidden: int = 12          # probe H (12 keeps D // Y distinct for Y = 1..4)
    points: int = 16          # rows of x
    seed: int = 0
    _cache: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def base_width(self) -> int:
        return probe_width(self.hidden, self.base_ratio)

    @cached_property
    def tensors(self) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        h, d = self.hidden, self.base_width
        rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
        # heavy tails: rows at scales 0.5 .. 50 so rare regimes (saturation, leaky slopes) show up
        scale = torch.tensor([0.5, 2.0, 10.0, 50.0], dtype=torch.float64).repeat(self.points)[:self.points]
        x = rnd(self.points, h) * scale[:, None]
        x[0] = 0.0  # exercise the kinks of relu/max at 0
        t = {"x": x, "w1": rnd(d, h) / h**0.5, "b1": rnd(d) * 0.1,
             "w2": rnd(h, d) / d**0.5, "b2": rnd(h) * 0.1}
        # a gate's own weights, drawn after the others: wb1 and wb3 differ, and the values (so the
        # fingerprints) of expressions without a gate stay what they were
        t.update(w3=rnd(d, h) / h**0.5, b3=rnd(d) * 0.1)
        return t

    def weights(self, slot: str, ratio: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Transposed weight (first ``width`` inputs) and bias of a slot at ratio Y, cached."""
        key = (slot, ratio, width)
        hit = self._cache.get(key)
        if hit is None:
            t, d = self.tensors, linear_width("wb1", ratio, self.hidden, self.base_width)
            if slot in ("wb1", "wb3"):  # H -> d: the value path and a gate, each its own weights
                w, bias = t["w" + slot[-1]][:d], t["b" + slot[-1]][:d]
            else:
                w, bias = t["w2"][:, :d], t["b2"]
            k = min(width, w.shape[1])
            hit = self._cache[key] = (w[:, :k].T.contiguous(), bias)
        return hit


def _linear(p: Probe, e: Expr, v: torch.Tensor) -> torch.Tensor:
    wt, bias = p.weights(e.args[1].name, e.op.ratio, v.shape[-1])
    return torch.addmm(bias, v[:, :wt.shape[0]], wt)


def evaluate(e: Expr, probe: Probe | None = None) -> torch.Tensor:
    """Values of ``e`` on the probe's x (float64, points x width), memoised per node and probe."""
    p = probe or default_probe()
    cache = p._cache
    hit = cache.get(e)
    if hit is not None:
        return hit
    k = e.op.kind
    if k is Kind.VAR:
        out = p.tensors["x"]
    elif k is Kind.LINEAR:
        out = _linear(p, e, evaluate(e.args[0], p))
    elif k is Kind.UNARY:
        out = e.op.torch_fn(evaluate(e.args[0], p))  # type: ignore[misc]
    else:
        a, b = evaluate(e.args[0], p), evaluate(e.args[1], p)
        w = binary_width(a.shape[-1], b.shape[-1])
        out = e.op.torch_fn(a[..., :w], b[..., :w])  # type: ignore[misc]
    if len(cache) > _CACHED_VALUES // p.points:
        cache.clear()  # the weights cached here are rebuilt on demand
    cache[e] = out
    return out


def evaluate_at(e: Expr, x: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:
    """Values of ``e`` at the rows of ``x`` (width = the probe's H) with the probe's weights; not
    memoised (for plots of an expression's response)."""
    p = probe or default_probe()
    memo: dict[Expr, torch.Tensor] = {}

    def go(n: Expr) -> torch.Tensor:
        if n not in memo:
            k = n.op.kind
            if k is Kind.VAR:
                memo[n] = x
            elif k is Kind.LINEAR:
                memo[n] = _linear(p, n, go(n.args[0]))
            elif k is Kind.UNARY:
                memo[n] = n.op.torch_fn(go(n.args[0]))  # type: ignore[misc]
            else:
                a, b = go(n.args[0]), go(n.args[1])
                w = binary_width(a.shape[-1], b.shape[-1])
                memo[n] = n.op.torch_fn(a[..., :w], b[..., :w])  # type: ignore[misc]
        return memo[n]

    return go(e)


def _quantised(v: torch.Tensor) -> bytes:
    with np.errstate(over="ignore"):  # values past float32's range hash as inf
        q = v.numpy().astype(np.float32)
    q[np.abs(q) < 1e-9] = 0.0  # -0.0 and round-off dust around zero hash alike
    return np.nan_to_num(q, copy=False, nan=7.0e30, posinf=8.0e30, neginf=-8.0e30).tobytes()


_LINEAR = re.compile(r"linear\d+_\d+")


def informative(v: torch.Tensor) -> bool:
    """Whether values (points x channels) can tell functions apart: all finite, and some channel
    varies with x.  Saturated values -- inf, 0 after underflow, a constant (plus wb2's bias) --
    are the same for different functions.

    >>> informative(torch.tensor([[0.0, 2.0], [1.0, 2.0]])), informative(torch.tensor([[0.0, 2.0], [0.0, 2.0]]))
    (True, False)
    >>> informative(torch.tensor([[0.0], [float("inf")]]))
    False
    """
    return bool(torch.isfinite(v).all()) and float((v.amax(0) - v.amin(0)).max()) > ATOL


def fingerprint(e: Expr, probe: Probe | None = None) -> str:
    """Hash of ``e``'s rounded outputs and its linears' X_Y (X does not change one block's values).
    Values that are not ``informative`` are hashed with ``e`` itself, so that different functions
    saturated alike never share a fingerprint (and are never merged)."""
    p = probe or default_probe()
    h = hashlib.blake2b(repr((p.base_ratio, p.hidden, p.points, p.seed)).encode(), digest_size=16)
    h.update(",".join(sorted(set(_LINEAR.findall(str(e))))).encode())
    v = evaluate(e, p)
    h.update(_quantised(v))
    if not informative(v):
        h.update(b"saturated:" + str(e).encode())
    return h.hexdigest()


MIN_CLEAN = 0.25      # least share of output values saturated in neither expression for a numeric merge
MIN_EXERCISED = 0.02  # least share of each operation's values that are clean and depend on an operand


def numerically_equal(a: Expr, b: Expr, base_ratio: float = 1.0, seeds: tuple[int, ...] = (1, 2)) -> bool:
    """Agreement (rtol 1e-9) on fresh probes with more points: the last word on equivalence.  Values
    that are not ``informative`` (non-finite, constant) prove nothing: False; nor does agreement
    where either expression is numerically saturated (``saturation.py``, on the first probe): unless
    at least ``MIN_CLEAN`` of the values are saturated in neither, and every operation of each is
    exercised (clean, not flat) at ``MIN_EXERCISED`` of its values, the pair stays apart.  The
    probes and what they computed are kept (a class representative is compared again and again)."""
    from .saturation import evidence
    if sorted(n.name for n in a.linears()) != sorted(n.name for n in b.linears()):
        return False
    for s in seeds:
        p = _fresh_probe(base_ratio, s)
        va, vb = evaluate(a, p), evaluate(b, p)
        if va.shape != vb.shape or not (informative(va) and informative(vb)) or \
                not torch.allclose(va, vb, rtol=1e-9, atol=ATOL):
            return False
    p = _fresh_probe(base_ratio, seeds[0])
    (sa, ua), (sb, ub) = evidence(a, p), evidence(b, p)
    return float((~(sa | sb)).float().mean()) >= MIN_CLEAN and min(ua, ub) >= MIN_EXERCISED


_FRESH: dict[tuple[float, int], Probe] = {}


def _fresh_probe(base_ratio: float, seed: int) -> Probe:
    """The probe of ``numerically_equal`` (64 points; other seeds than the fingerprint's)."""
    if (base_ratio, seed) not in _FRESH:
        _FRESH[base_ratio, seed] = Probe(base_ratio=base_ratio, points=64, seed=seed)
    return _FRESH[base_ratio, seed]


_DEFAULT: dict[float, Probe] = {}


def default_probe(base_ratio: float = 1.0) -> Probe:
    if base_ratio not in _DEFAULT:
        _DEFAULT[base_ratio] = Probe(base_ratio=base_ratio)
    return _DEFAULT[base_ratio]
