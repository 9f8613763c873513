"""search state --> next candidates: random search, regularised evolution, and a LaNAS-style
learned partition of the space, behind one interface.

Input: one ``Space`` per layer (stage 2 fixes each layer's X_Y; stage 3 fixes the bodies) and a
``random.Random``.  Output: ``propose()`` -> a per-layer ``ModelSpec``; ``observe(spec, score)``
feeds results back (``score`` None = failed or over budget).  Invariants: every proposal is
strictly valid and inside its layer's space; given the same seed and the same observations in the
same order, a sampler proposes the same sequence (the search observes in proposal order).

>>> import random
>>> from .generate import Space
>>> s = make_sampler("random", [Space(max_depth=4, max_size=5)] * 2, random.Random(0))
>>> len(s.propose())
2
"""
from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from exprsearch.errors import ConfigError, DSLError
from exprsearch.lang.expr import AttnSpec, ModelSpec
from exprsearch.lang.ops import OPS, Kind

from .evolve import crossover, mutate
from .generate import Space, sample

__all__ = ["Sampler", "RandomSampler", "EvolutionSampler", "LaNASSampler", "make_sampler", "features",
           "SAMPLERS", "parse_attn_choices"]


class Sampler:
    """The interface: propose a spec, observe its score (or that it duplicated an evaluated one).

    A sampler owns its settings (``settings``: the search options it reads, by name) and its
    reaction to duplicates; ``local_start``: it can start from one evaluated spec
    (``start_from``) instead of being seeded with it."""

    name = "base"
    settings: tuple[str, ...] = ()   # options of the search config this sampler takes
    local_start = False              # start_from() grows the search from a given spec

    def __init__(self, spaces: list[Space], rng: random.Random, seeds: list[ModelSpec] | None = None,
                 attn_choices: list[AttnSpec | None] | None = None, depths: list[int] | None = None,
                 fixed_attn: tuple[AttnSpec | None, ...] | None = None) -> None:
        self.spaces, self.rng = spaces, rng
        self.seeds = list(seeds or [])
        self.history: list[tuple[ModelSpec, float | None]] = []
        self.attn_choices = list(attn_choices or [])     # per-layer attention options (empty: standard)
        self.depths = sorted(d for d in (depths or []) if 1 <= d <= len(spaces))  # layer counts to try
        self.fixed_attn = fixed_attn                     # stage 2: the stage-1 winner's attention parts

    def _attn(self, n: int) -> tuple[AttnSpec | None, ...] | None:
        if self.fixed_attn is not None:
            return self.fixed_attn[:n]
        return tuple(self.rng.choice(self.attn_choices) for _ in range(n)) if self.attn_choices else None

    def random_spec(self) -> ModelSpec:
        n = self.rng.choice(self.depths) if self.depths else len(self.spaces)
        return ModelSpec(tuple(sample(sp, self.rng) for sp in self.spaces[:n]), self._attn(n))

    def propose(self) -> ModelSpec:
        if self.seeds:
            return self.seeds.pop(0)
        return self._propose()

    def _propose(self) -> ModelSpec:
        return self.random_spec()

    def observe(self, spec: ModelSpec, score: float | None) -> None:
        self.history.append((spec, score))

    def duplicate(self, spec: ModelSpec) -> None:
        """``spec`` was not evaluated: an equivalent one already was (the search's dedup)."""

    def start_from(self, spec: ModelSpec, score: float | None) -> None:
        """Grow from ``spec`` (already evaluated, with ``score``): it is observed, not proposed."""
        self.observe(spec, score)


class RandomSampler(Sampler):
    """Uniform over each layer's valid trees: the baseline every NAS claim must beat."""

    name = "random"


class EvolutionSampler(Sampler):
    """Regularised evolution (Real et al.): tournament selection, mutation or crossover of one
    layer, the oldest member dies.  The first population is random, or with ``local=True`` (a
    refining stage) mutations of the seeds and of what grew from them: a search around the seeds,
    which turns to random proposals while ``STUCK`` proposals in a row were duplicates (a small or
    exhausted neighbourhood).

    >>> from exprsearch.lang.parsing import parse_spec
    >>> seed = parse_spec("linear1_1(gelu(linear1_1(x,wb1)),wb2)").broadcast(2)
    >>> s = EvolutionSampler([Space()] * 2, random.Random(0), [seed], local=True)
    >>> s.propose() == seed; s.observe(seed, 60.0)
    True
    >>> sum(a != b for a, b in zip(s.propose().layers, seed.layers)) <= 1
    True
    """

    name = "evolution"
    STUCK = 50

    settings = ("population", "tournament")
    local_start = True

    def __init__(self, spaces: list[Space], rng: random.Random, seeds: list[ModelSpec] | None = None,
                 population: int = 16, tournament: int = 4, p_crossover: float = 0.3, local: bool = False,
                 **arch: Any) -> None:
        from exprsearch.errors import ConfigError
        if population < 1 or not 1 <= tournament <= population:
            raise ConfigError(f"evolution: population {population} and tournament {tournament}: "
                              f"need 1 <= tournament <= population")
        super().__init__(spaces, rng, seeds, **arch)
        self.population: deque[tuple[ModelSpec, float]] = deque()
        self.size, self.tournament, self.p_crossover, self.local = population, tournament, p_crossover, local
        self._dups = 0  # duplicates proposed in a row (local mode)

    def duplicate(self, spec: ModelSpec) -> None:
        self._dups += 1

    def start_from(self, spec: ModelSpec, score: float | None) -> None:
        self.local = True  # the first population: mutations of ``spec``, not random specs
        self.observe(spec, score)

    def _pick(self) -> ModelSpec:
        group = [self.rng.choice(self.population) for _ in range(min(self.tournament, len(self.population)))]
        return max(group, key=lambda m: m[1])[0]

    def _propose(self) -> ModelSpec:
        if self.local and self._dups >= self.STUCK:
            return self.random_spec()
        if len(self.population) < self.size:
            if not (self.local and self.population):
                return self.random_spec()
            parent = self.rng.choice(self.population)[0]  # local start: vary what is there, not random
        else:
            parent = self._pick()
        layers = list(parent.layers)
        i = self.rng.randrange(len(layers))
        sp = self.spaces[i]
        if self.rng.random() < self.p_crossover:
            other = self._pick()
            if self.rng.random() < 0.5:  # layer-wise uniform crossover
                layers = [a if self.rng.random() < 0.5 else b for a, b in zip(layers, other.layers)]
            else:
                layers[i], _ = crossover(layers[i], other.layers[i], sp, self.rng)
        else:
            layers[i], _ = mutate(layers[i], sp, self.rng)
        attn = list(parent.attn) if parent.attn is not None else None
        if self.attn_choices and self.fixed_attn is None and self.rng.random() < 0.25:  # architecture moves
            attn = attn or [None] * len(layers)
            attn[i] = self.rng.choice(self.attn_choices)
        if self.depths and self.rng.random() < 0.15:
            n = self.rng.choice(self.depths)
            layers = layers[:n] + [sample(s_, self.rng) for s_ in self.spaces[len(layers):n]]
            attn = None if attn is None else (attn + [self.rng.choice(self.attn_choices) if self.attn_choices else None]
                                               * n)[:n]
        return ModelSpec(tuple(layers), tuple(attn) if attn is not None else None)

    def observe(self, spec: ModelSpec, score: float | None) -> None:
        super().observe(spec, score)
        self._dups = 0
        if score is not None:
            self.population.append((spec, score))
            if len(self.population) > self.size:
                self.population.popleft()


_OP_NAMES = [o.name for o in OPS.values() if o.kind in (Kind.UNARY, Kind.BINARY)]


def features(spec: ModelSpec, layers: int | None = None) -> np.ndarray:
    """Per layer: count of each unary/binary op, X, Y, size, depth, an outer-activation flag, and
    the attention part (heads, LSRA flag); padded with zeros to ``layers`` layers."""
    rows = []
    attn = spec.attn or (None,) * len(spec.layers)
    for e, a in zip(spec.layers, attn):
        counts = {n: 0 for n in _OP_NAMES}
        for n in e.walk():
            if n.name in counts:
                counts[n.name] += 1
        lin = e.linears()
        x, y = (lin[0].op.blocks, lin[0].op.ratio) if lin else (0, 0)
        rows.append(list(counts.values()) + [x, y, e.size, e.depth, float(e.op.is_activation),
                                             float(a.heads or 0) if a else 0.0, float(a is not None and a.kind == "lsra")])
    width = len(rows[0])
    rows += [[0.0] * width] * max(0, (layers or len(rows)) - len(rows))
    return np.asarray(rows, dtype=np.float64).ravel()


@dataclass
class _Node:
    w: np.ndarray | None = None            # linear classifier: sign(x @ w[:-1] + w[-1]) > 0 -> good child
    good: "_Node | None" = None
    bad: "_Node | None" = None
    idx: list[int] = field(default_factory=list)  # history rows in this node


class LaNASSampler(Sampler):
    """A LaNAS-style learned sampler: a tree of linear classifiers splits the observed candidates
    into good and bad regions (at each node: above/below the node's median score); new candidates
    are drawn from a pool (mutants of good candidates plus random ones) and kept if they fall in
    the leaf chosen by UCB over leaves."""

    name = "lanas"

    def __init__(self, spaces: list[Space], rng: random.Random, seeds: list[ModelSpec] | None = None,
                 depth: int = 2, warmup: int = 16, pool: int = 64, c: float = 1.0, **arch: Any) -> None:
        super().__init__(spaces, rng, seeds, **arch)
        self.depth, self.warmup, self.pool_size, self.c = depth, warmup, pool, c
        self.root: _Node | None = None

    def duplicate(self, spec: ModelSpec) -> None:
        self.observe(spec, None)  # a duplicate region counts as a bad one

    def _scored(self) -> list[tuple[ModelSpec, float]]:
        return [(s, v) for s, v in self.history if v is not None]

    def _fit(self) -> None:
        scored = self._scored()
        X = np.stack([features(s, len(self.spaces)) for s, _ in scored])
        y = np.asarray([v for _, v in scored])
        self._X, self._y = X, y

        def build(idx: list[int], level: int) -> _Node:
            nd = _Node(idx=idx)
            if level >= self.depth or len(idx) < 6:
                return nd
            med = float(np.median(y[idx]))
            target = np.where(y[idx] >= med, 1.0, -1.0)
            A = np.hstack([X[idx], np.ones((len(idx), 1))])
            w, *_ = np.linalg.lstsq(A, target, rcond=None)
            side = A @ w > 0
            good = [i for i, s in zip(idx, side) if s]
            bad = [i for i, s in zip(idx, side) if not s]
            if not good or not bad:
                return nd
            nd.w, nd.good, nd.bad = w, build(good, level + 1), build(bad, level + 1)
            return nd

        self.root = build(list(range(len(y))), 0)

    def _leaf(self, f: np.ndarray) -> _Node:
        nd = self.root
        while nd is not None and nd.w is not None:
            nd = nd.good if float(np.append(f, 1.0) @ nd.w) > 0 else nd.bad
        return nd  # type: ignore[return-value]

    def _leaves(self, nd: _Node) -> list[_Node]:
        return [nd] if nd.w is None else self._leaves(nd.good) + self._leaves(nd.bad)  # type: ignore[arg-type]

    def _propose(self) -> ModelSpec:
        scored = self._scored()
        if len(scored) < self.warmup:
            return self.random_spec()
        self._fit()
        leaves = self._leaves(self.root)  # type: ignore[arg-type]
        total = sum(len(l.idx) for l in leaves)
        ucb = [float(np.mean(self._y[l.idx])) + self.c * math.sqrt(2 * math.log(total) / len(l.idx))
               for l in leaves]
        target = leaves[int(np.argmax(ucb))]
        best = sorted(scored, key=lambda t: -t[1])[: max(4, len(scored) // 4)]
        pool = []
        for _ in range(self.pool_size):
            if self.rng.random() < 0.7:
                parent = self.rng.choice(best)[0]
                layers = list(parent.layers)
                i = self.rng.randrange(len(layers))
                layers[i], _ = mutate(layers[i], self.spaces[i], self.rng)
                pool.append(ModelSpec(tuple(layers), parent.attn))
            else:
                pool.append(self.random_spec())
        inside = [s for s in pool if self._leaf(features(s, len(self.spaces))) is target]
        return self.rng.choice(inside or pool)


SAMPLERS: dict[str, type[Sampler]] = {"random": RandomSampler, "evolution": EvolutionSampler, "lanas": LaNASSampler}


def make_sampler(name: str, spaces: list[Space], rng: random.Random, seeds: list[ModelSpec] | None = None,
                 options: Any = None, **kw: Any) -> Sampler:
    """The sampler ``name``; it takes the settings it names from ``options`` (e.g. a
    ``SearchConfig``), the architecture choices from ``kw``."""
    from exprsearch.errors import ConfigError, suggest
    if name not in SAMPLERS:
        best = suggest(name, list(SAMPLERS))
        raise ConfigError(f"unknown sampler {name!r}" + (f"; did you mean {best!r}?" if best else
                                                          f"; choose from {', '.join(SAMPLERS)}"))
    cls = SAMPLERS[name]
    own = {k: getattr(options, k) for k in cls.settings if hasattr(options, k)}
    return cls(spaces, rng, seeds, **own, **kw)


def parse_attn_choices(text: str) -> list[AttnSpec | None]:
    """'mha()|mha(heads=6)|lsra(heads=6, kernel=7)' -> AttnSpecs ('std' = the model's attention);
    ConfigError for a choice that is none of these."""
    from exprsearch.lang.parsing import parse_spec
    out: list[AttnSpec | None] = []
    for item in filter(None, (t.strip() for t in text.split("|"))):
        try:
            out.append(None if item == "std" else parse_spec(f"layer(attn={item}, ffn=x)", validate=False).attn[0])  # type: ignore[index]
        except DSLError as err:
            raise ConfigError(f"attention choice {item!r}: {err.message} (the choices: std, mha(heads=K), "
                              f"lsra(heads=K, kernel=N))") from None
    return out


