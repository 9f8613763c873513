"""Search-space generation: exact counts (checked against a brute-force oracle), enumeration,
uniform sampling, determinism, and valid in-space mutation / crossover."""
from __future__ import annotations

import collections
import math
import random

import pytest
from _support import STANDARD_FFN, efficientbert_layers

from exprsearch import Space, count, crossover, enumerate_space, mutate, parse, sample
from exprsearch.errors import ConfigError
from exprsearch.lang.expr import WB1, WB2, WB3, Expr, X, node
from exprsearch.lang.ops import Kind
from exprsearch.lang.validity import is_valid, validate
from exprsearch.space.evolve import GATE_MUTATIONS, MUTATIONS
from exprsearch.space.generate import random_tree


def brute_force(sp: Space) -> set[Expr]:
    """Every strictly valid tree of the space, by generating *all* well-typed trees over the
    space's operators within the limits and filtering with validate() -- independent of the
    dynamic programme in generate.py (a space with gates also wraps trees in wb3 linears)."""
    by_size: dict[int, list[Expr]] = {1: [X]}
    slots = (WB1, WB2, WB3) if sp.gates else (WB1, WB2)
    wrappers = ([lambda t, u=u: node(u, t) for u in sp.unary]
                + [lambda t, o=o, s=s: node(o, t, s) for o in sp.xy for s in slots])
    for s in range(2, sp.max_size + 1):
        out = [w(t) for t in by_size[s - 1] for w in wrappers]
        for s1 in range(1, s - 1):
            out += [node(b, l, r) for b in sp.binary for l in by_size[s1] for r in by_size[s - 1 - s1]]
        by_size[s] = [t for t in out if t.depth <= sp.max_depth]
    return {t for ts in by_size.values() for t in ts
            if is_valid(t) and sp.allows(t) and (sp.outer_activation or t.kind is Kind.LINEAR)}


SMALL_SPACES = {
    "doc": Space(max_depth=3, max_size=4, unary=("gelu",), binary=(), blocks=(1,), ratios=(1,)),
    "gelu-relu-add-max": Space(max_depth=4, max_size=5, unary=("gelu", "relu"), binary=("add", "max"),
                               blocks=(1, 2), ratios=(1,)),
    "two-ratios": Space(max_depth=4, max_size=6, unary=("gelu", "relu"), binary=("max",), blocks=(1,),
                        ratios=(1, 2)),
    "non-activation-unary": Space(max_depth=5, max_size=6, unary=("gelu", "neg"), binary=("max",),
                                  blocks=(1,), ratios=(1,), outer_activation=False),
    "depth-bound": Space(max_depth=3, max_size=6, unary=("relu", "tanh"), binary=("mul", "add"),
                         blocks=(2,), ratios=(3,)),
    "extension-ops": Space(max_depth=5, max_size=6, unary=("sigmoid", "square", "sqrelu"), binary=("min",),
                           blocks=(4,), ratios=(4,)),
    "reference-ops": Space(max_depth=4, max_size=6, blocks=(1,), ratios=(2,)),
    # gated FFNs (the wb3 extension): the plain trees plus those with one gate beside wb1
    "gated-smallest": Space(max_depth=3, max_size=6, unary=(), binary=("mul",), blocks=(1,), ratios=(1,),
                            gates=True),
    "gated-glu": Space(max_depth=4, max_size=7, unary=("gelu", "swish"), binary=("mul",), blocks=(1,), ratios=(3,),
                       gates=True),
    "gated-sub": Space(max_depth=4, max_size=7, unary=("gelu",), binary=("sub", "mul"), blocks=(1,), ratios=(1,),
                       gates=True),
    "gated-no-outer": Space(max_depth=4, max_size=7, unary=("relu", "neg"), binary=("max",), blocks=(1, 2),
                            ratios=(1,), outer_activation=False, gates=True),
}


@pytest.mark.parametrize("name", SMALL_SPACES)
def test_count_equals_enumeration_equals_brute_force(name):
    sp = SMALL_SPACES[name]
    trees = list(enumerate_space(sp))
    assert len(trees) == count(sp) > 0
    assert len(set(trees)) == len(trees), "enumeration yields each tree once"
    for t in trees:
        assert validate(t) is t and sp.allows(t)
    assert set(trees) == brute_force(sp)


def test_documented_small_space():
    sp = SMALL_SPACES["doc"]
    assert count(sp) == 4
    assert [str(e) for e in enumerate_space(sp)] == [
        "linear1_1(linear1_1(x,wb1),wb2)", "linear1_1(gelu(linear1_1(x,wb1)),wb2)",
        "linear1_1(linear1_1(gelu(x),wb1),wb2)", "gelu(linear1_1(linear1_1(x,wb1),wb2))"]


def test_spaces_with_sub_only_yield_valid_trees():
    sp = Space(max_depth=4, max_size=6, unary=("gelu",), binary=("sub",), blocks=(1,), ratios=(1,))
    trees = list(enumerate_space(sp))
    assert all(is_valid(t) for t in trees), [str(t) for t in trees if not is_valid(t)]
    assert count(sp) == len(brute_force(sp))


def test_count_scales_with_the_linear_choices():
    one = count(Space(blocks=(1,), ratios=(1,)))
    assert count(Space()) == 16 * one
    assert count(Space(blocks=(1, 3), ratios=(2, 4))) == 4 * one
    assert count(Space(max_depth=6, max_size=8)) > count(Space(max_depth=5, max_size=7)) > 0


def test_limits_that_admit_only_the_plain_ffn_shape():
    sp = Space(max_depth=3, max_size=4, unary=(), binary=(), blocks=(1,), ratios=(1,))
    assert [str(e) for e in enumerate_space(sp)] == ["linear1_1(linear1_1(x,wb1),wb2)"]


# -- sampling ----------------------------------------------------------------------------------

def test_samples_are_valid_and_in_space():
    for sp in (Space(), Space(max_depth=7, max_size=10), SMALL_SPACES["extension-ops"]):
        rng = random.Random(7)
        for _ in range(300):
            e = sample(sp, rng)
            assert validate(e) is e and sp.allows(e), str(e)


def test_sampling_is_deterministic_for_a_seed():
    sp = Space()
    a = [str(e) for e in _draw(sp, 42, 50)]
    assert a == [str(e) for e in _draw(sp, 42, 50)]
    assert a != [str(e) for e in _draw(sp, 43, 50)]
    assert len(set(a)) > 40  # a big space: draws rarely repeat


def _draw(sp: Space, seed: int, n: int) -> list[Expr]:
    rng = random.Random(seed)
    return [sample(sp, rng) for _ in range(n)]


def chi_square_upper_bound(df: int, z: float = 5.0) -> float:
    """Wilson-Hilferty: the chi-square quantile with normal score z (z=5: p ~ 3e-7)."""
    c = 2.0 / (9.0 * df)
    return df * (1.0 - c + z * math.sqrt(c)) ** 3


def test_sampling_is_uniform_over_trees():
    sp = SMALL_SPACES["two-ratios"]
    trees = list(enumerate_space(sp))
    k, n = len(trees), 20_000
    assert 80 <= k <= 150
    rng = random.Random(2024)
    counts = collections.Counter(sample(sp, rng) for _ in range(n))
    assert set(counts) == set(trees), "every tree is reachable and nothing else is drawn"
    expected = n / k
    stat = sum((counts[t] - expected) ** 2 / expected for t in trees)
    assert stat < chi_square_upper_bound(k - 1), (stat, k)
    # and not suspiciously perfect either (a deterministic round-robin would give ~0)
    assert stat > 0.2 * (k - 1)


def test_random_tree_respects_its_limits():
    sp = Space()
    rng = random.Random(3)
    for _ in range(500):
        t = random_tree(sp, rng, max_depth=2, max_size=3)
        assert t.depth <= 2 and t.size <= 3 and not t.linears()
        assert sp.allows(t)


# -- mutation and crossover --------------------------------------------------------------------

PARENTS = [STANDARD_FFN] + list(efficientbert_layers())


def _mutation_trials(seed: int, sp: Space, n: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pool = [parse(p) for p in PARENTS if sp.allows(parse(p))]
    out = []
    for _ in range(n):
        parent = rng.choice(pool)
        child, how = mutate(parent, sp, rng)
        assert validate(child) is child and sp.allows(child), (str(parent), how, str(child))
        if how != "resample":
            assert child is not parent and how in MUTATIONS, how
        out.append((str(child), how))
        if rng.random() < 0.5:
            pool.append(child)
    return out


def test_mutation_yields_valid_in_space_children_and_is_deterministic():
    sp = Space()
    first = _mutation_trials(11, sp, 2_000)
    assert first == _mutation_trials(11, sp, 2_000)
    hows = collections.Counter(how for _, how in first)
    assert set(MUTATIONS) - set(GATE_MUTATIONS) == set(hows), hows  # every operator but the gates' gets used


def test_mutation_in_a_tight_space():
    sp = Space(max_depth=4, max_size=5, unary=("gelu", "relu"), binary=("max",), blocks=(1,), ratios=(1, 2))
    trials = _mutation_trials(5, sp, 500)
    assert len({c for c, _ in trials}) > 10


def _crossover_trials(seed: int, sp: Space, n: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pool = [parse(p) for p in PARENTS] + [sample(sp, rng) for _ in range(30)]
    out = []
    for _ in range(n):
        a, b = rng.choice(pool), rng.choice(pool)
        child, how = crossover(a, b, sp, rng)
        assert validate(child) is child and sp.allows(child), (str(a), str(b), how, str(child))
        out.append((str(child), how))
    return out


def test_crossover_yields_valid_in_space_children_and_is_deterministic():
    sp = Space()
    first = _crossover_trials(12, sp, 2_000)
    assert first == _crossover_trials(12, sp, 2_000)
    hows = collections.Counter(how.split(":")[0] for _, how in first)
    assert {"swap_g", "swap_f", "swap_outer", "subtree"} <= set(hows), hows


def test_crossover_swaps_the_parts_of_published_layers():
    sp = Space()
    a = parse("linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)")
    b = parse("tanh(linear2_2(relu(linear2_2(x,wb1)),wb2))")
    children = {str(crossover(a, b, sp, random.Random(s))[0]) for s in range(200)}
    assert "linear2_2(gelu(linear2_2(x,wb1)),wb2)" in children                  # G from b
    assert "tanh(linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2))" in children  # b's outer act


# -- bad configurations ------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, words", [
    ({"unary": ("add",)}, "'add' is not a unary operator"),
    ({"binary": ("gelu",)}, "'gelu' is not a binary operator"),
    ({"unary": ("gleu",)}, "'gleu' is not a unary"),
    ({"binary": ("linear1_1",)}, "not a binary"),
    ({"blocks": ()}, "blocks must be a non-empty subset"),
    ({"blocks": (5,)}, "blocks must be"),
    ({"ratios": (0, 1)}, "ratios must be"),
    ({"max_depth": 2}, "smallest FFN has depth 3 and size 4"),
    ({"max_size": 3}, "smallest FFN"),
])
def test_space_rejects_bad_configs(kwargs, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        Space(**kwargs)
