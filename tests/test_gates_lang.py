"""Gated FFNs, the wb3 extension (issue 24): the op table, validity, canonical form, fingerprint and
algebra, the width rule, and the space's counting, sampling and gate mutations.  The rules' error
messages are rows of the known-bad table in test_parse_errors.py; the brute-force count of gated
spaces is in test_generate.py."""
from __future__ import annotations

import collections
import dataclasses
import random

import pytest
import torch
from sympy.core.function import AppliedUndef

from exprsearch import Deduper, Space, canonical_key, count, crossover, enumerate_space, mutate, parse, sample
from exprsearch.lang.numeric import Probe, evaluate, fingerprint, numerically_equal
from exprsearch.lang.ops import OPS, Kind
from exprsearch.lang.symbolic import prove_equal, to_sympy
from exprsearch.lang.validity import gate_of, split_ffn, validate
from exprsearch.lang.widths import linear_width, node_widths, symbolic_width
from exprsearch.space.evolve import GATE_MUTATIONS, MUTATIONS, _insert_gate, remove_gate

GEGLU = "linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)"
SWIGLU = "linear1_3(mul(swish(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)"
TWICE = "linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb1)),wb2)"  # the "gate" reuses wb1's weights
VALID_GATED = [
    GEGLU, SWIGLU,
    "linear1_3(gelu(mul(linear1_3(x,wb1),linear1_3(x,wb3))),wb2)",       # the gate inside the activation
    "tanh(linear2_2(mul(linear2_2(x,wb1),linear2_2(tanh(x),wb3)),wb2))",  # outer activation; gate of tanh(x)
    "linear4_1(max(linear4_1(x,wb1),sigmoid(linear4_1(x,wb3))),wb2)",      # any binary joins the branches
]


# -- the op table and the grammar -------------------------------------------------------------

def test_the_gate_slot_is_one_extension_row():
    o = OPS["wb3"]
    assert o.kind is Kind.SLOT and o.is_leaf and not o.reference
    assert "H -> d" in o.doc
    assert not Space().allows(parse(GEGLU)) and Space(gates=True).allows(parse(GEGLU))


@pytest.mark.parametrize("text", VALID_GATED)
def test_gated_forms_are_strictly_valid_and_round_trip(text):
    e = parse(text)
    assert validate(e) is e and str(e) == text and parse(str(e)) is e
    gate, (_, w2, w1) = gate_of(e), split_ffn(e)
    assert gate is not None and gate.slot == "wb3" and gate.op is w1.op is w2.op
    assert w2.input.contains(gate) and not gate.input.linears()


def test_an_expression_without_a_gate_has_no_gate():
    assert gate_of(parse("linear1_3(gelu(linear1_3(x,wb1)),wb2)")) is None


def test_relaxed_rules_allow_several_gates():
    e = parse("linear1_3(mul(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),linear1_3(tanh(x),wb3)),wb2)",
              strict=False)
    assert len([n for n in e.linears() if n.slot == "wb3"]) == 2


# -- canonical form, fingerprint, algebra, dedup -------------------------------------------------

def test_a_gate_is_not_its_value_path():
    """GEGLU's gate has weights of its own: it never dedups with the same form reusing wb1."""
    g, t = parse(GEGLU), parse(TWICE, strict=False)
    assert canonical_key(g) != canonical_key(t)
    assert fingerprint(g) != fingerprint(t)
    assert not numerically_equal(g, t)
    assert prove_equal(g, t) is False
    dd = Deduper()
    assert dd.add(g).key != dd.add(t).key and len(dd) == 2


def test_gated_forms_equal_up_to_commutativity_are_one_candidate():
    a, b = parse(GEGLU), parse("linear1_3(mul(linear1_3(x,wb3),gelu(linear1_3(x,wb1))),wb2)")
    assert canonical_key(a) == canonical_key(b) == str(b)  # the smaller operand first
    dd = Deduper()
    assert dd.add(a).key == dd.add(b).key and len(dd) == 1
    assert dd.add(parse(SWIGLU)).key != dd.add(a).key


def test_the_probe_draws_the_gate_after_the_reference_weights():
    """wb3 has its own random weights, drawn last: the probe of expressions without a gate -- so
    their fingerprints, and every stored key -- is what it was before the extension."""
    p = Probe()
    g = torch.Generator().manual_seed(p.seed)
    draw = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    h = d = p.hidden
    draw(p.points, h)  # x
    before = {"w1": draw(d, h) / h**0.5, "b1": draw(d) * 0.1, "w2": draw(h, d) / d**0.5, "b2": draw(h) * 0.1}
    for name, want in before.items():
        assert torch.equal(p.tensors[name], want), name
    assert torch.equal(p.tensors["w3"], draw(d, h) / h**0.5)
    e = parse(GEGLU)
    assert not torch.allclose(evaluate(gate_of(e), p), evaluate(split_ffn(e)[2], p))


def test_the_gate_has_its_own_sympy_function():
    funcs = {f.func.__name__ for f in to_sympy(parse(GEGLU)).atoms(AppliedUndef)}
    assert funcs == {"lin1_3_wb1", "lin1_3_wb3", "lin1_3_wb2"}


def test_the_gate_is_d_wide_like_wb1():
    e = parse(GEGLU)
    gate, w1 = gate_of(e), split_ffn(e)[2]
    widths = node_widths(e, 384, lambda y: 384 // y)
    assert widths[gate] == widths[w1] == 128 == linear_width("wb3", 3, 384, 384)
    assert widths[e] == 384 and symbolic_width(gate) == "d" == symbolic_width(e.args[0])


# -- the space: counting, sampling, mutation ----------------------------------------------------

PLAIN = Space(max_depth=4, max_size=7, unary=("gelu", "swish"), binary=("mul",), blocks=(1,), ratios=(3,))
GATED = dataclasses.replace(PLAIN, gates=True)


def test_gates_add_exactly_the_gated_trees():
    plain, both = list(enumerate_space(PLAIN)), list(enumerate_space(GATED))
    assert [e for e in both if gate_of(e) is None] == plain  # the same trees, in the same order
    gated = [e for e in both if gate_of(e) is not None]
    assert count(GATED) - count(PLAIN) == len(gated) == 26
    assert parse(GEGLU) in gated and parse(SWIGLU) in gated


def test_the_reference_space_count_is_unchanged():
    assert count(Space()) == 649_856 and Space().gates is False
    assert count(Space(gates=True)) > count(Space())


def test_sampling_a_gated_space_is_uniform():
    trees = list(enumerate_space(GATED))
    k, n = len(trees), 12_000
    rng = random.Random(24)
    counts = collections.Counter(sample(GATED, rng) for _ in range(n))
    assert set(counts) == set(trees)
    expected = n / k
    stat = sum((counts[t] - expected) ** 2 / expected for t in trees)
    assert 0.2 * (k - 1) < stat < 2.0 * (k - 1), (stat, k)  # chi-square with k - 1 = 123 df


def test_gate_mutations_need_a_space_with_gates():
    e = parse("linear1_3(gelu(linear1_3(x,wb1)),wb2)")
    assert _insert_gate(e, Space(), random.Random(0)) is None
    assert _insert_gate(parse(GEGLU), Space(gates=True), random.Random(0)) is None  # one gate at most
    assert remove_gate(e, Space(gates=True), random.Random(0)) is None
    rng = random.Random(5)
    assert all(gate_of(mutate(e, Space(), rng)[0]) is None for _ in range(300))


@pytest.mark.parametrize("text", ["linear1_3(gelu(linear1_3(x,wb1)),wb2)",
                                  "tanh(linear2_2(relu(mul(x,linear2_2(sigmoid(x),wb1))),wb2))",
                                  "linear4_4(linear4_4(x,wb1),wb2)"])
def test_insert_then_remove_a_gate_round_trips(text):
    e, sp = parse(text), Space(gates=True)
    for seed in range(20):
        child = _insert_gate(e, sp, random.Random(seed))
        assert validate(child) is child and gate_of(child).op is e.linears()[0].op
        assert remove_gate(child, sp, random.Random(seed)) is e


def test_mutation_and_crossover_in_a_gated_space():
    sp, rng = Space(gates=True), random.Random(11)
    pool = [parse("linear1_3(gelu(linear1_3(x,wb1)),wb2)"), parse(GEGLU), parse(SWIGLU)]
    hows: collections.Counter[str] = collections.Counter()
    for _ in range(1_500):
        child, how = mutate(rng.choice(pool), sp, rng)
        assert validate(child) is child and sp.allows(child), (how, str(child))
        hows[how] += 1
        other, _ = crossover(rng.choice(pool), child, sp, rng)
        assert validate(other) is other and sp.allows(other)
        if rng.random() < 0.3:
            pool.append(child)
    assert set(MUTATIONS) <= set(hows), hows  # the gate mutations too
    assert set(GATE_MUTATIONS) <= set(MUTATIONS)
