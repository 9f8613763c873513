"""Samplers: random, regularised evolution, LaNAS-style -- validity, determinism, use of feedback."""
from __future__ import annotations

import hashlib
import math
import random

import numpy as np
import pytest

from exprsearch.errors import ConfigError
from exprsearch.lang.expr import ModelSpec
from exprsearch.lang.parsing import parse, parse_spec
from exprsearch.lang.validity import validate
from exprsearch.space.generate import Space, sample
from exprsearch.space.samplers import (
    _OP_NAMES,
    SAMPLERS,
    EvolutionSampler,
    LaNASSampler,
    RandomSampler,
    features,
    make_sampler,
)

STANDARD = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"
NAMES = ("random", "evolution", "lanas")

# two layers with different spaces: proposals must respect each layer's own space
SPACES = [Space(max_depth=5, max_size=7),
          Space(max_depth=4, max_size=6, unary=("relu", "gelu", "tanh"), binary=("add", "mul"), blocks=(2,),
                ratios=(3, 4))]
KW = {"random": {}, "evolution": {"population": 6, "tournament": 3}, "lanas": {"warmup": 10, "pool": 32}}


def score(spec: ModelSpec) -> float:
    """A fixed function of the spec text: a learnable trend (fewer blocks, more ratio is better)
    plus a deterministic hash in [0, 1) that breaks ties."""
    h = int(hashlib.sha256(str(spec).encode()).hexdigest()[:8], 16) / 2 ** 32
    return float(sum(e.linears()[0].op.ratio - e.linears()[0].op.blocks for e in spec.layers)) + h


def drive(sampler, steps: int = 40, fn=score, fail_every: int = 0) -> list[str]:
    """Propose/observe ``steps`` times (every ``fail_every``-th observation is a failure)."""
    out = []
    for i in range(steps):
        spec = sampler.propose()
        out.append(str(spec))
        failed = fail_every and i % fail_every == fail_every - 1
        sampler.observe(spec, None if failed else fn(spec))
    return out


def new(name: str, seed: int = 0, spaces=SPACES, seeds=None, **kw):
    return make_sampler(name, spaces, random.Random(seed), seeds, **{**KW[name], **kw})


# -- validity ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_proposals_are_valid_and_inside_each_layers_space(name):
    s = new(name, seed=3)
    for _ in range(40):
        spec = s.propose()
        assert isinstance(spec, ModelSpec) and len(spec) == len(SPACES)
        for e, sp in zip(spec.layers, SPACES):
            assert validate(e) is e  # strict rules: raises if broken
            assert sp.allows(e), (str(e), sp)
        s.observe(spec, score(spec))


@pytest.mark.parametrize("name", NAMES)
def test_seeds_come_first_in_order(name):
    seeds = [parse_spec(f"[{STANDARD}; linear2_3(relu(linear2_3(x,wb1)),wb2)]"),
             parse_spec(f"[{STANDARD}; linear2_4(gelu(linear2_4(x,wb1)),wb2)]")]
    s = new(name, seeds=list(seeds))
    assert [s.propose(), s.propose()] == seeds
    assert s.seeds == []  # consumed: afterwards the sampler's own proposals, inside the spaces
    assert all(sp.allows(e) for e, sp in zip(s.propose().layers, SPACES))


# -- determinism ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_same_seed_and_observations_give_the_same_proposals(name):
    a, b = drive(new(name, seed=7), fail_every=5), drive(new(name, seed=7), fail_every=5)
    assert a == b
    assert len(set(a)) > 20  # not a degenerate sequence
    assert drive(new(name, seed=8), fail_every=5) != a  # the seed matters


# -- evolution -----------------------------------------------------------------------------------

def _shares_a_layer(spec: ModelSpec, members: list[ModelSpec]) -> bool:
    return any(a == b for m in members for a, b in zip(spec.layers, m.layers))


def test_evolution_proposes_children_of_the_population():
    size = 6
    evo = new("evolution", seed=1, population=size)
    rnd = new("random", seed=1)
    shared = {"evolution": 0, "random": 0}
    steps = 0
    for i in range(60):
        full = len(evo.population) == size  # evolution phase: compare with evo's current population
        members = [m for m, _ in evo.population]
        steps += full
        for name, s in (("evolution", evo), ("random", rnd)):
            spec = s.propose()
            if full:
                shared[name] += _shares_a_layer(spec, members)
            s.observe(spec, score(spec))
    assert steps >= 50
    # a child keeps at least one parent layer (mutation and crossover change one layer or mix
    # whole layers of two members); random specs almost never do
    assert shared["evolution"] == steps
    assert shared["random"] < steps // 4


def test_local_evolution_starts_from_the_seed_not_from_random():
    """Stage 2 refines stage 1's best: with ``local=True`` the first population is grown from the
    seed (every proposal keeps all but at most one layer of some member); without it, random."""
    seed = ModelSpec((parse(STANDARD), parse("linear2_3(relu(linear2_3(x,wb1)),wb2)")))
    kept = {}
    for local in (True, False):
        s = EvolutionSampler(SPACES, random.Random(3), [seed], population=8, tournament=3, local=local)
        kept[local] = 0
        for _ in range(8):  # the initial population only
            members = [m for m, _ in s.population]
            spec = s.propose()
            if members:
                new_layers = [i for i, e in enumerate(spec.layers) if all(e != m.layers[i] for m in members)]
                kept[local] += len(new_layers) <= 1
            s.observe(spec, score(spec))
    assert kept[True] == 7
    assert kept[False] <= 2


def test_evolution_population_is_the_latest_successes_oldest_dies():
    s = new("evolution", seed=2, population=4)
    observed = []
    for i in range(12):
        spec = s.propose()
        sc = None if i % 3 == 2 else score(spec)
        s.observe(spec, sc)
        if sc is not None:
            observed.append((spec, sc))
    assert list(s.population) == observed[-4:]  # failures never join; regularised: age, not fitness
    assert len(s.history) == 12


def test_evolution_depends_on_the_observed_scores():
    up = drive(new("evolution", seed=4, population=6), fn=score)
    down = drive(new("evolution", seed=4, population=6), fn=lambda s: -score(s))
    assert up[:6] == down[:6]  # filling the population: random, independent of scores
    assert up[6:] != down[6:]  # afterwards selection follows the scores


# -- LaNAS ---------------------------------------------------------------------------------------

def _target_leaf(s: LaNASSampler):
    """The leaf the last proposal aimed at (the same UCB rule as the sampler)."""
    leaves = s._leaves(s.root)
    total = sum(len(leaf.idx) for leaf in leaves)
    ucb = [float(np.mean(s._y[leaf.idx])) + s.c * math.sqrt(2 * math.log(total) / len(leaf.idx)) for leaf in leaves]
    return leaves[int(np.argmax(ucb))]


def test_lanas_builds_a_tree_after_warmup_and_samples_in_the_chosen_leaf():
    s = new("lanas", seed=5, warmup=10, pool=32)
    rng = random.Random(99)
    hits = tries = random_hits = 0
    for i in range(40):
        scored = len(s._scored())
        spec = s.propose()
        if scored < s.warmup:
            assert s.root is None  # warm-up: uniform random proposals, no tree yet
        else:
            root = s.root
            assert root is not None and root.w is not None  # the tree split the observations
            leaves = s._leaves(root)
            assert len(leaves) >= 2
            assert sorted(i for leaf in leaves for i in leaf.idx) == list(range(scored))  # a partition
            target = _target_leaf(s)
            tries += 1
            hits += s._leaf(features(spec)) is target
            uniform = ModelSpec(tuple(sample(sp, rng) for sp in SPACES))  # own generator: s is undisturbed
            random_hits += s._leaf(features(uniform)) is target
        s.observe(spec, score(spec))
    assert tries == 30
    # proposals land in the chosen region whenever the pool has a member there (nearly always)
    assert hits >= 0.9 * tries
    assert hits > random_hits


def test_lanas_ignores_failures_when_fitting():
    s = new("lanas", seed=6, warmup=8, pool=16)
    drive(s, steps=20, fail_every=2)
    assert len(s._scored()) == 10 and len(s.history) == 20
    s.propose()
    assert s.root is not None and len(s._y) == 10


# -- construction --------------------------------------------------------------------------------

def test_make_sampler_builds_each_kind():
    assert set(SAMPLERS) == set(NAMES)
    assert isinstance(new("random"), RandomSampler)
    evo = new("evolution", population=5, tournament=2)
    assert isinstance(evo, EvolutionSampler) and (evo.size, evo.tournament) == (5, 2)
    assert isinstance(new("lanas"), LaNASSampler)


def test_unknown_sampler_is_a_config_error_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown sampler 'evolutoin'; did you mean 'evolution'\?"):
        make_sampler("evolutoin", SPACES, random.Random(0))
    with pytest.raises(ConfigError) as err:
        make_sampler("bayesian", SPACES, random.Random(0))
    assert "choose from random, evolution, lanas" in str(err.value)


def test_features_shape_and_content():
    per_layer = len(_OP_NAMES) + 7
    spec = parse_spec("[tanh(linear2_3(max(x,gelu(linear2_3(x,wb1))),wb2)); " + STANDARD + "]")
    f = features(spec)
    assert f.shape == (2 * per_layer,) and f.dtype == np.float64
    first, second = f[:per_layer], f[per_layer:]
    counts = dict(zip(_OP_NAMES, first[:len(_OP_NAMES)]))
    assert counts["tanh"] == counts["max"] == counts["gelu"] == 1
    assert sum(counts.values()) == 3
    e = spec.layers[0]
    # X, Y, size, depth, outer activation, attention heads, LSRA flag
    assert list(first[len(_OP_NAMES):]) == [2, 3, e.size, e.depth, 1.0, 0.0, 0.0]
    std = parse(STANDARD)
    assert list(second[len(_OP_NAMES):]) == [1, 1, std.size, std.depth, 0.0, 0.0, 0.0]
    lsra = parse_spec(f"[layer(attn=lsra(heads=3), ffn={STANDARD})]")
    assert list(features(lsra, layers=2)[len(_OP_NAMES) + 5:]) == [3.0, 1.0] + [0.0] * per_layer  # padded
    assert features(parse_spec(f"[{STANDARD}]")).shape == (per_layer,)
    assert features(ModelSpec((std,) * 6)).shape == (6 * per_layer,)


def test_local_evolution_turns_random_when_stuck_on_duplicates():
    seed = ModelSpec((parse(STANDARD), parse("linear2_3(relu(linear2_3(x,wb1)),wb2)")))
    s = EvolutionSampler(SPACES, random.Random(5), population=8, local=True)
    s.observe(seed, 1.0)
    for _ in range(EvolutionSampler.STUCK):
        s.duplicate(seed)  # the search found each proposal already evaluated
    assert s.propose() == EvolutionSampler(SPACES, random.Random(5)).random_spec()  # exploration
    s.observe(seed, 1.0)  # an evaluation resets the streak: local proposals again
    child = s.propose()
    assert sum(a != b for a, b in zip(child.layers, seed.layers)) <= 1
