"""search space --> expressions: exact counting, uniform sampling and enumeration.

Input: a ``Space`` (limits and operator choices).  Output: strictly valid expressions of the shape
``[act](linearX_Y(F[linearX_Y(G, wb1)], wb2))``, where G is a tree over x and F a tree over x with
exactly one hole for the wb1 linear.  Invariants: ``count`` is the exact number of distinct valid
syntax trees within the limits (dynamic programming over depth, size, "is the parent an
activation", and the hole); ``sample`` draws uniformly from exactly those trees; ``enumerate``
yields each of them once.  All randomness comes from the ``random.Random`` passed in.

>>> sp = Space(max_depth=3, max_size=4, unary=("gelu",), binary=(), blocks=(1,), ratios=(1,))
>>> count(sp)
4
>>> for e in enumerate_space(sp): print(e)
linear1_1(linear1_1(x,wb1),wb2)
linear1_1(gelu(linear1_1(x,wb1)),wb2)
linear1_1(linear1_1(gelu(x),wb1),wb2)
gelu(linear1_1(linear1_1(x,wb1),wb2))
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator

from exprsearch.errors import ConfigError
from exprsearch.lang.expr import WB1, WB2, Expr, X, node
from exprsearch.lang.ops import (
    BLOCK_CHOICES,
    OPS,
    RATIO_CHOICES,
    REFERENCE_BINARY,
    REFERENCE_UNARY,
    Kind,
    Op,
    linear_op,
)
from exprsearch.lang.validity import is_valid

__all__ = ["Space", "count", "sample", "enumerate_space", "random_tree", "Hole"]

Hole = tuple[int, int]  # (depth, size) of the wb1 linear plugged into F


@dataclass(frozen=True)
class Space:
    """A search space of strictly valid FFN expressions."""

    max_depth: int = 6                           # depth of the whole FFN tree (standard FFN: 3)
    max_size: int = 8                            # nodes, slots not counted (standard FFN: 4)
    unary: tuple[str, ...] = REFERENCE_UNARY     # unary operators allowed
    binary: tuple[str, ...] = REFERENCE_BINARY   # binary operators allowed
    blocks: tuple[int, ...] = BLOCK_CHOICES      # X choices (stacked FFN blocks)
    ratios: tuple[int, ...] = RATIO_CHOICES      # Y choices (inner width D // Y)
    outer_activation: bool = True                # may an activation wrap the wb2 linear?
    _dp: "_Counter | None" = field(default=None, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        for names, kind in ((self.unary, Kind.UNARY), (self.binary, Kind.BINARY)):
            for n in names:
                if n not in OPS or OPS[n].kind is not kind:
                    raise ConfigError(f"'{n}' is not a {kind.value} operator; choose from "
                                      f"{[o.name for o in OPS.values() if o.kind is kind]}")
        for name, vals in (("blocks", self.blocks), ("ratios", self.ratios)):
            if not vals or any(v not in BLOCK_CHOICES for v in vals):
                raise ConfigError(f"{name} must be a non-empty subset of {list(BLOCK_CHOICES)}")
        if self.max_depth < 3 or self.max_size < 4:
            raise ConfigError("the smallest FFN has depth 3 and size 4: raise max_depth/max_size")
        object.__setattr__(self, "_dp", _Counter(self))

    @property
    def xy(self) -> list[Op]:
        return [linear_op(x, y) for x in self.blocks for y in self.ratios]

    @property
    def outers(self) -> list[Op | None]:
        acts = [OPS[n] for n in self.unary if OPS[n].is_activation]
        return [None] + (acts if self.outer_activation else [])

    def allows(self, e: Expr) -> bool:
        """Within the limits and using only this space's operators (validity is checked apart)."""
        if e.depth > self.max_depth or e.size > self.max_size:
            return False
        allowed = set(self.unary) | set(self.binary) | {o.name for o in self.xy} | {"x", "wb1", "wb2"}
        return all(n.name in allowed for n in e.walk())


class _Counter:
    """Memoised tree counts: trees(d, s, under_act, hole) = #trees of depth <= d and size == s."""

    def __init__(self, sp: Space) -> None:
        self.unary = [OPS[n] for n in sp.unary]
        self.binary = [OPS[n] for n in sp.binary]
        self.trees = lru_cache(maxsize=None)(self._trees)

    def _trees(self, d: int, s: int, under_act: bool, hole: Hole | None) -> int:
        if d < 0 or s <= 0:
            return 0
        n = int(hole is None and s == 1)
        if hole is not None and s == hole[1] and d >= hole[0]:
            n += 1
        if d == 0:
            return n
        for u in self.unary:
            if not (under_act and u.is_activation):
                n += self.trees(d - 1, s - 1, u.is_activation, hole)
        if self.binary:
            pairs = 0
            for s1 in range(1, s - 1):
                s2 = s - 1 - s1
                if hole is None:
                    pairs += self.trees(d - 1, s1, False, None) * self.trees(d - 1, s2, False, None)
                else:
                    pairs += (self.trees(d - 1, s1, False, hole) * self.trees(d - 1, s2, False, None)
                              + self.trees(d - 1, s1, False, None) * self.trees(d - 1, s2, False, hole))
            n += len(self.binary) * pairs
        return n

    def exact_depth(self, d: int, s: int) -> int:
        return self.trees(d, s, False, None) - self.trees(d - 1, s, False, None)


def _shapes(sp: Space) -> Iterator[tuple[Op | None, int, int, int, int]]:
    """(outer, G depth, G size, F size, #trees) for every non-empty part of the space (per X_Y)."""
    dp = sp._dp
    assert dp is not None
    for outer in sp.outers:
        top = 2 if outer is not None else 1
        fd, fs = sp.max_depth - top, sp.max_size - top
        for gd in range(0, fd):
            for gs in range(1, fs):
                g = dp.exact_depth(gd, gs)
                if not g:
                    continue
                for s in range(gs + 1, fs + 1):
                    f = dp.trees(fd, s, False, (gd + 1, gs + 1))
                    if f:
                        yield outer, gd, gs, s, g * f


def _may_be_constant(sp: Space) -> bool:
    """Only ``sub(a, a)`` makes a tree constant in x, so without ``sub`` every tree is valid."""
    return "sub" in sp.binary


def count(sp: Space, limit: int = 2_000_000) -> int:
    """Exact number of strictly valid expression trees in the space.

    Dynamic programming; when ``sub`` is in the space, trees constant in x (``sub(e, e)``, invalid)
    are excluded by enumerating one X (X never changes validity), up to ``limit`` trees."""
    trees = sum(n for *_, n in _shapes(sp))
    if not _may_be_constant(sp):
        return len(sp.xy) * trees
    if trees * len(sp.ratios) > limit:
        raise ConfigError(f"{trees * len(sp.ratios):,} trees to check for sub(e, e); raise limit or drop 'sub'")
    x0 = sp.blocks[0]
    return len(sp.blocks) * sum(1 for y in sp.ratios for _ in enumerate_space(sp, xy=[linear_op(x0, y)]))


def _pick(rng: random.Random, weighted: list[tuple[int, object]]) -> object:
    r = rng.randrange(sum(w for w, _ in weighted))
    for w, item in weighted:
        if r < w:
            return item
        r -= w
    raise AssertionError("unreachable")


def _sample_tree(dp: _Counter, rng: random.Random, d: int, s: int, under_act: bool,
                 hole: Expr | None, hk: Hole | None) -> Expr:
    """A uniform tree among the ``dp.trees(d, s, under_act, hk)`` ones; the hole becomes ``hole``."""
    opts: list[tuple[int, object]] = []
    if hk is None and s == 1:
        opts.append((1, ("x",)))
    if hk is not None and s == hk[1] and d >= hk[0]:
        opts.append((1, ("hole",)))
    if d > 0:
        for u in dp.unary:
            if not (under_act and u.is_activation):
                opts.append((dp.trees(d - 1, s - 1, u.is_activation, hk), ("u", u)))
        for b in dp.binary:
            for s1 in range(1, s - 1):
                s2 = s - 1 - s1
                for h1, h2 in ([(None, None)] if hk is None else [(hk, None), (None, hk)]):
                    w = dp.trees(d - 1, s1, False, h1) * dp.trees(d - 1, s2, False, h2)
                    opts.append((w, ("b", b, s1, s2, h1, h2)))
    choice = _pick(rng, [o for o in opts if o[0]])
    tag = choice[0]  # type: ignore[index]
    if tag == "x":
        return X
    if tag == "hole":
        return hole  # type: ignore[return-value]
    if tag == "u":
        u = choice[1]  # type: ignore[index]
        return node(u, _sample_tree(dp, rng, d - 1, s - 1, u.is_activation, hole, hk))
    _, b, s1, s2, h1, h2 = choice  # type: ignore[misc]
    return node(b, _sample_tree(dp, rng, d - 1, s1, False, hole if h1 else None, h1),
                _sample_tree(dp, rng, d - 1, s2, False, hole if h2 else None, h2))


def sample(sp: Space, rng: random.Random) -> Expr:
    """One expression drawn uniformly from the space's valid trees."""
    dp = sp._dp
    assert dp is not None
    outer, gd, gs, fs, _ = _pick(rng, [(n, sh) for sh in _shapes(sp) for n in [sh[-1]]])  # type: ignore[misc]
    lin = rng.choice(sp.xy)
    while True:  # rejection keeps uniformity: G must have depth exactly gd
        g = _sample_tree(dp, rng, gd, gs, False, None, None)
        if g.depth == gd:
            break
    hole = node(lin, g, WB1)
    f = _sample_tree(dp, rng, sp.max_depth - (2 if outer else 1), fs, False, hole, (gd + 1, gs + 1))
    e = node(lin, f, WB2)
    e = node(outer, e) if outer is not None else e
    if _may_be_constant(sp) and not is_valid(e):
        return sample(sp, rng)  # rejection keeps the draw uniform over the valid trees
    return e


def _all_trees(dp: _Counter, d: int, s: int, under_act: bool, hole: Expr | None,
               hk: Hole | None) -> Iterator[Expr]:
    if d < 0 or s <= 0 or not dp.trees(d, s, under_act, hk):
        return
    if hk is None and s == 1:
        yield X
    if hk is not None and s == hk[1] and d >= hk[0]:
        yield hole  # type: ignore[misc]
    if d == 0:
        return
    for u in dp.unary:
        if not (under_act and u.is_activation):
            for c in _all_trees(dp, d - 1, s - 1, u.is_activation, hole, hk):
                yield node(u, c)
    for b in dp.binary:
        for s1 in range(1, s - 1):
            s2 = s - 1 - s1
            for h1, h2 in ([(None, None)] if hk is None else [(hk, None), (None, hk)]):
                rights = list(_all_trees(dp, d - 1, s2, False, hole if h2 else None, h2))
                for left in _all_trees(dp, d - 1, s1, False, hole if h1 else None, h1):
                    for right in rights:
                        yield node(b, left, right)


def enumerate_space(sp: Space, xy: list[Op] | None = None) -> Iterator[Expr]:
    """Every valid tree of the space exactly once (``xy`` restricts the linears)."""
    dp = sp._dp
    assert dp is not None
    constant_possible = _may_be_constant(sp)
    for outer, gd, gs, fs, _ in _shapes(sp):
        fd = sp.max_depth - (2 if outer else 1)
        for lin in xy or sp.xy:
            for g in _all_trees(dp, gd, gs, False, None, None):
                if g.depth != gd:
                    continue
                hole = node(lin, g, WB1)
                for f in _all_trees(dp, fd, fs, False, hole, (gd + 1, gs + 1)):
                    e = node(lin, f, WB2)
                    e = node(outer, e) if outer is not None else e
                    if not constant_possible or is_valid(e):
                        yield e


def random_tree(sp: Space, rng: random.Random, max_depth: int = 2, max_size: int = 3,
                under_act: bool = False) -> Expr:
    """A uniform small tree over x (for mutation): depth <= max_depth, size <= max_size."""
    dp = sp._dp
    assert dp is not None
    sizes = [(dp.trees(max_depth, s, under_act, None), s) for s in range(1, max_size + 1)]
    s = _pick(rng, [w for w in sizes if w[0]])
    return _sample_tree(dp, rng, max_depth, s, under_act, None, None)  # type: ignore[arg-type]

