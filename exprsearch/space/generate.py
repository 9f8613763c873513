"""search space --> expressions: exact counting, uniform sampling and enumeration.

Input: a ``Space`` (limits and operator choices).  Output: strictly valid expressions of the shape
``[act](linearX_Y(F[linearX_Y(G, wb1)], wb2))``, where G is a tree over x and F a tree over x with
exactly one hole for the wb1 linear; with ``gates`` (an extension) also gated ones,
``[act](linearX_Y(F[linearX_Y(G, wb1), linearX_Y(G3, wb3)], wb2))``, F with one hole for each
linear.  Invariants: ``count`` is the exact number of distinct valid syntax trees within the
limits (dynamic programming over depth, size, "is the parent an activation", and the holes);
``sample`` draws uniformly from exactly those trees; ``enumerate`` yields each of them once.  All
randomness comes from the ``random.Random`` passed in.

>>> sp = Space(max_depth=3, max_size=4, unary=("gelu",), binary=(), blocks=(1,), ratios=(1,))
>>> count(sp)
4
>>> for e in enumerate_space(sp): print(e)
linear1_1(linear1_1(x,wb1),wb2)
linear1_1(gelu(linear1_1(x,wb1)),wb2)
linear1_1(linear1_1(gelu(x),wb1),wb2)
gelu(linear1_1(linear1_1(x,wb1),wb2))
>>> gated = Space(max_depth=3, max_size=6, unary=(), binary=("mul",), blocks=(1,), ratios=(1,), gates=True)
>>> count(gated), [str(e) for e in enumerate_space(gated) if e.size == 6]
(6, ['linear1_1(mul(linear1_1(x,wb3),linear1_1(x,wb1)),wb2)', 'linear1_1(mul(linear1_1(x,wb1),linear1_1(x,wb3)),wb2)'])
"""
from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator, TypeVar

from exprsearch.errors import ConfigError
from exprsearch.lang.expr import WB1, WB2, WB3, Expr, X, node
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

Hole = tuple[int, int]  # (depth, size) of a linear plugged into F: the wb1 linear, a gate's wb3 linear
Holes = tuple[Hole, ...]  # the holes a tree must hold, each exactly once: () , (wb1,) or (wb1, wb3)
HOLE_SLOTS = (WB1, WB3)  # the slot of each hole, by position


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
    gates: bool = False                          # also gated FFNs, e.g. GEGLU: a wb3 gate beside wb1 (an extension)
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

    def describe(self) -> str:
        """The space's limits, operators and gates as one line (an ``EvalConfig.warmup_space``: the
        space a supernet warm-up draws from); ``Space.from_text`` reads it back (X and Y aside).

        >>> Space.from_text(Space(max_size=9, gates=True).describe()) == Space(max_size=9, gates=True)
        True
        >>> Space.from_text("") == Space()
        True
        """
        return (f"depth={self.max_depth},size={self.max_size},unary={'|'.join(self.unary)},"
                f"binary={'|'.join(self.binary)},gates={int(self.gates)}")

    @classmethod
    def from_text(cls, text: str, **kw: object) -> "Space":
        """The space ``describe`` wrote (``""``: the reference space); ``kw`` sets X and Y choices."""
        if not text:
            return cls(**kw)  # type: ignore[arg-type]
        try:
            f = dict(item.split("=", 1) for item in text.split(","))
            return cls(max_depth=int(f["depth"]), max_size=int(f["size"]),
                       unary=tuple(filter(None, f["unary"].split("|"))),
                       binary=tuple(filter(None, f["binary"].split("|"))), gates=f["gates"] == "1", **kw)  # type: ignore[arg-type]
        except (KeyError, ValueError):
            raise ConfigError(f"warmup_space {text!r}: expected depth=D,size=S,unary=a|b,binary=c|d,gates=0|1") from None

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
        if self.gates:
            allowed.add("wb3")
        return all(n.name in allowed for n in e.walk())


class _Counter:
    """Memoised tree counts: trees(d, s, under_act, holes) = #trees of depth <= d and size == s
    holding each hole of ``holes`` exactly once (and no other linear)."""

    def __init__(self, sp: Space) -> None:
        self.unary = [OPS[n] for n in sp.unary]
        self.binary = [OPS[n] for n in sp.binary]
        self.trees = lru_cache(maxsize=None)(self._trees)

    def _trees(self, d: int, s: int, under_act: bool, hk: Holes) -> int:
        if d < 0 or s <= 0:
            return 0
        n = int(not hk and s == 1)
        if len(hk) == 1 and s == hk[0][1] and d >= hk[0][0]:
            n += 1
        if d == 0:
            return n
        for u in self.unary:
            if not (under_act and u.is_activation):
                n += self.trees(d - 1, s - 1, u.is_activation, hk)
        if self.binary:
            pairs = 0
            for s1 in range(1, s - 1):
                s2 = s - 1 - s1
                for left, right in _splits(len(hk)):  # each hole goes to one operand
                    pairs += self.trees(d - 1, s1, False, _take(hk, left)) * self.trees(d - 1, s2, False, _take(hk, right))
            n += len(self.binary) * pairs
        return n

    def exact_depth(self, d: int, s: int) -> int:
        return self.trees(d, s, False, ()) - self.trees(d - 1, s, False, ())


@lru_cache(maxsize=None)
def _splits(n: int) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """The ways to share ``n`` holes (by index) between a binary op's two operands, all-left first.

    >>> _splits(1)
    (((0,), ()), ((), (0,)))
    """
    return tuple((tuple(i for i in range(n) if m >> i & 1), tuple(i for i in range(n) if not m >> i & 1))
                 for m in range(2**n - 1, -1, -1))


def _take(items: tuple, idx: tuple[int, ...]) -> tuple:
    return tuple(items[i] for i in idx)


Shape = tuple["Op | None", tuple[Hole, ...], int, int]  # (outer, (depth, size) of each linear's input, F size, #trees)


def _shapes(sp: Space) -> Iterator[Shape]:
    """Every non-empty part of the space (per X_Y): the plain FFNs (one hole, wb1), then with
    ``gates`` the gated ones (two holes, wb1 and wb3)."""
    dp = sp._dp
    assert dp is not None
    for k in ((1, 2) if sp.gates else (1,)):
        for outer in sp.outers:
            top = 2 if outer is not None else 1
            fd, fs = sp.max_depth - top, sp.max_size - top
            inputs = [((gd, gs), g) for gd in range(0, fd) for gs in range(1, fs) for g in [dp.exact_depth(gd, gs)] if g]
            for combo in itertools.product(inputs, repeat=k):
                ins = tuple(c[0] for c in combo)
                for s in range(sum(gs + 1 for _, gs in ins) + k - 1, fs + 1):
                    f = dp.trees(fd, s, False, _hole_keys(ins))
                    if f:
                        yield outer, ins, s, math.prod(c[1] for c in combo) * f


def _hole_keys(ins: tuple[Hole, ...]) -> Holes:
    """(depth, size) of the linears whose inputs have these shapes."""
    return tuple((gd + 1, gs + 1) for gd, gs in ins)


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


T = TypeVar("T")


def _pick(rng: random.Random, weighted: list[tuple[int, T]]) -> T:
    r = rng.randrange(sum(w for w, _ in weighted))
    for w, item in weighted:
        if r < w:
            return item
        r -= w
    raise AssertionError("unreachable")


def _sample_tree(dp: _Counter, rng: random.Random, d: int, s: int, under_act: bool,
                 holes: tuple[Expr, ...], hk: Holes) -> Expr:
    """A uniform tree among the ``dp.trees(d, s, under_act, hk)`` ones; the holes become ``holes``."""
    opts: list[tuple[int, object]] = []
    if not hk and s == 1:
        opts.append((1, ("x",)))
    if len(hk) == 1 and s == hk[0][1] and d >= hk[0][0]:
        opts.append((1, ("hole",)))
    if d > 0:
        for u in dp.unary:
            if not (under_act and u.is_activation):
                opts.append((dp.trees(d - 1, s - 1, u.is_activation, hk), ("u", u)))
        for b in dp.binary:
            for s1 in range(1, s - 1):
                s2 = s - 1 - s1
                for left, right in _splits(len(hk)):
                    w = dp.trees(d - 1, s1, False, _take(hk, left)) * dp.trees(d - 1, s2, False, _take(hk, right))
                    opts.append((w, ("b", b, s1, s2, left, right)))
    choice = _pick(rng, [o for o in opts if o[0]])
    tag = choice[0]  # type: ignore[index]
    if tag == "x":
        return X
    if tag == "hole":
        return holes[0]
    if tag == "u":
        u = choice[1]  # type: ignore[index]
        return node(u, _sample_tree(dp, rng, d - 1, s - 1, u.is_activation, holes, hk))
    _, b, s1, s2, left, right = choice  # type: ignore[misc]
    return node(b, _sample_tree(dp, rng, d - 1, s1, False, _take(holes, left), _take(hk, left)),
                _sample_tree(dp, rng, d - 1, s2, False, _take(holes, right), _take(hk, right)))


def _sample_input(dp: _Counter, rng: random.Random, gd: int, gs: int) -> Expr:
    """A uniform tree over x of depth exactly ``gd`` and size ``gs`` (a linear's input)."""
    while True:  # rejection keeps uniformity: the tree must have depth exactly gd
        g = _sample_tree(dp, rng, gd, gs, False, (), ())
        if g.depth == gd:
            return g


def sample(sp: Space, rng: random.Random) -> Expr:
    """One expression drawn uniformly from the space's valid trees."""
    dp = sp._dp
    assert dp is not None
    outer, ins, fs, _ = _pick(rng, [(n, sh) for sh in _shapes(sp) for n in [sh[-1]]])
    lin = rng.choice(sp.xy)
    holes = tuple(node(lin, _sample_input(dp, rng, gd, gs), slot) for (gd, gs), slot in zip(ins, HOLE_SLOTS))
    f = _sample_tree(dp, rng, sp.max_depth - (2 if outer else 1), fs, False, holes, _hole_keys(ins))
    e = node(lin, f, WB2)
    e = node(outer, e) if outer is not None else e
    if _may_be_constant(sp) and not is_valid(e):
        return sample(sp, rng)  # rejection keeps the draw uniform over the valid trees
    return e


def _all_trees(dp: _Counter, d: int, s: int, under_act: bool, holes: tuple[Expr, ...],
               hk: Holes) -> Iterator[Expr]:
    if d < 0 or s <= 0 or not dp.trees(d, s, under_act, hk):
        return
    if not hk and s == 1:
        yield X
    if len(hk) == 1 and s == hk[0][1] and d >= hk[0][0]:
        yield holes[0]
    if d == 0:
        return
    for u in dp.unary:
        if not (under_act and u.is_activation):
            for c in _all_trees(dp, d - 1, s - 1, u.is_activation, holes, hk):
                yield node(u, c)
    for b in dp.binary:
        for s1 in range(1, s - 1):
            s2 = s - 1 - s1
            for li, ri in _splits(len(hk)):
                rights = list(_all_trees(dp, d - 1, s2, False, _take(holes, ri), _take(hk, ri)))
                for left in _all_trees(dp, d - 1, s1, False, _take(holes, li), _take(hk, li)):
                    for right in rights:
                        yield node(b, left, right)


def enumerate_space(sp: Space, xy: list[Op] | None = None) -> Iterator[Expr]:
    """Every valid tree of the space exactly once (``xy`` restricts the linears)."""
    dp = sp._dp
    assert dp is not None
    constant_possible = _may_be_constant(sp)
    for outer, ins, fs, _ in _shapes(sp):
        fd = sp.max_depth - (2 if outer else 1)
        for lin in xy or sp.xy:
            inputs = [[g for g in _all_trees(dp, gd, gs, False, (), ()) if g.depth == gd] for gd, gs in ins]
            for gs_ in itertools.product(*inputs):
                holes = tuple(node(lin, g, slot) for g, slot in zip(gs_, HOLE_SLOTS))
                for f in _all_trees(dp, fd, fs, False, holes, _hole_keys(ins)):
                    e = node(lin, f, WB2)
                    e = node(outer, e) if outer is not None else e
                    if not constant_possible or is_valid(e):
                        yield e


def random_tree(sp: Space, rng: random.Random, max_depth: int = 2, max_size: int = 3,
                under_act: bool = False) -> Expr:
    """A uniform small tree over x (for mutation): depth <= max_depth, size <= max_size."""
    dp = sp._dp
    assert dp is not None
    sizes = [(dp.trees(max_depth, s, under_act, ()), s) for s in range(1, max_size + 1)]
    s = _pick(rng, [w for w in sizes if w[0]])
    return _sample_tree(dp, rng, max_depth, s, under_act, (), ())

