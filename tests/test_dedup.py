"""Deduplication: identical / sympy / numeric merges, no false merges (the reference's rounded-sum
collisions stay apart), base-ratio sensitivity, and the DAG view."""
from __future__ import annotations

import itertools

import networkx as nx
import pytest
from _support import STANDARD_FFN, example_lines

import exprsearch.lang.dedup as dedup_mod
from exprsearch import Deduper, Space, dag_stats, enumerate_space, parse, to_dag
from exprsearch.lang.expr import ModelSpec
from exprsearch.lang.numeric import (
    Probe,
    default_probe,
    evaluate,
    fingerprint,
    numerically_equal,
)
from exprsearch.lang.symbolic import prove_equal, to_sympy

DIST_A = "linear1_2(relu(linear1_2(mul(x,add(x,tanh(x))),wb1)),wb2)"
DIST_B = "linear1_2(relu(linear1_2(add(square(x),mul(x,tanh(x))),wb1)),wb2)"
ABS_A = "linear1_1(gelu(linear1_1(relu(x),wb1)),wb2)"
ABS_B = "linear1_1(gelu(linear1_1(sub(max(x,neg(x)),relu(neg(x))),wb1)),wb2)"  # |x| - relu(-x)


def reference_key(e, probe: Probe | None = None) -> float:
    """The reference implementation's numeric dedup key: the output sum rounded to 2 decimals."""
    return round(float(evaluate(e, probe or default_probe()).sum()), 2)


def test_identical_canonical_forms_merge():
    dd = Deduper()
    r1 = dd.add(parse("linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)"))
    r2 = dd.add(parse("linear2_2(gelu(linear2_2(max(tanh(x),x),wb1)),wb2)"))
    r3 = dd.add(parse("linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)"))
    assert (r1.is_new, r1.proof) == (True, "new")
    assert (r2.is_new, r2.proof, r2.key) == (False, "identical", r1.key)
    assert (r3.is_new, r3.proof, r3.key) == (False, "identical", r1.key)
    assert r2.canonical is r1.canonical
    assert len(dd) == 1 and dd.proofs == {"new": 1, "identical": 2, "sympy": 0, "numeric": 0}


def test_sympy_proves_distributivity_inside_the_wb1_input():
    dd = Deduper(full_proofs=True)
    a, b = parse(DIST_A), parse(DIST_B)
    assert str(a) != str(b) and dd.add(a).is_new
    r = dd.add(b)
    assert (r.is_new, r.proof, r.key) == (False, "sympy", str(dd.add(a).canonical))
    assert prove_equal(a, b, simplify=False)
    assert "lin1_2_wb1" in str(to_sympy(a))
    assert dd.groups() == {r.key: [r.key, str(r.canonical)]}


def test_numeric_merge_when_sympy_is_off_or_cannot_prove():
    dd = Deduper(use_sympy=False)
    dd.add(parse(DIST_A))
    assert dd.add(parse(DIST_B)).proof == "numeric"
    # |x| - relu(-x) == relu(x): exact in floating point, beyond sympy's expand
    dd2 = Deduper()
    dd2.add(parse(ABS_A))
    r = dd2.add(parse(ABS_B))
    assert not prove_equal(parse(ABS_A), parse(ABS_B), simplify=False)
    assert (r.is_new, r.proof, r.key) == (False, "numeric", ABS_A)


def _nest(op: str, text: str, times: int) -> str:
    for _ in range(times):
        text = f"{op}({text})"
    return text


@pytest.mark.parametrize("op, base, n", [
    ("sqrelu", "linear4_4(sigmoid(linear4_4(square(elu(x)),wb1)),wb2)", 10),  # 5e-192 vs 0: underflow
    ("square", STANDARD_FFN, 20),                                            # 0 .. inf: overflow
    ("sqrt_abs", "x", 50),                                                   # 1.0 everywhere
])
def test_saturated_values_never_merge_different_functions(op, base, n):
    """Issue 23: all-0 / all-inf / constant values agreed on every probe, so a nest of n and of
    n + 1 (different functions) became one candidate."""
    a, b = parse(_nest(op, base, n), strict=False), parse(_nest(op, base, n + 1), strict=False)
    assert not numerically_equal(a, b)
    assert fingerprint(a) != fingerprint(b)
    dd = Deduper(use_sympy=False)
    assert dd.add(a).is_new and dd.add(b).is_new and len(dd) == 2
    assert dd.add(b).proof == "identical"  # the same canonical form still merges


def test_sympy_gives_up_on_large_or_slow_proofs_and_the_pair_stays_apart(monkeypatch):
    """Issue 23: sqrt_abs nested 50 vs 99 times kept sympy busy for minutes; proofs are now limited
    in size and time, and a pair sympy gives up on stays two classes."""
    import exprsearch.lang.symbolic as symbolic
    deep_a, deep_b = parse(_nest("sqrt_abs", "x", 50), strict=False), parse(_nest("sqrt_abs", "x", 99), strict=False)
    assert max(deep_a.size, deep_b.size) > symbolic.PROOF_MAX_SIZE
    assert prove_equal(deep_a, deep_b) is None
    dd = Deduper(full_proofs=True)
    assert dd.add(deep_a).is_new and dd.add(deep_b).is_new
    # a pair the probes agree on, over the size limit: distinct instead of a numeric merge
    monkeypatch.setattr(symbolic, "PROOF_MAX_SIZE", 3)
    dd = Deduper(full_proofs=True)
    assert dd.add(parse(DIST_A)).is_new and dd.add(parse(DIST_B)).is_new
    # the time limit: a proof simplify needs seconds for, given a fraction of one
    monkeypatch.setattr(symbolic, "PROOF_MAX_SIZE", 40)
    monkeypatch.setattr(symbolic, "PROOF_SECONDS", 0.05)
    slow_a, slow_b = (parse(_nest("sqrt_abs", STANDARD_FFN, n), strict=False) for n in (10, 11))
    assert prove_equal(slow_a, slow_b, simplify=True) is None


def test_lookup_and_contains_do_not_add():
    dd = Deduper()
    dd.add(parse(DIST_A))
    assert dd.lookup(parse(DIST_B)) == str(dd.add(parse(DIST_A)).key)
    assert parse(DIST_B) in dd
    assert parse(STANDARD_FFN) not in dd and dd.lookup(parse(STANDARD_FFN)) is None
    assert len(dd) == 1


def test_different_linear_ids_never_merge():
    dd = Deduper()
    keys = set()
    for x, y in itertools.product(range(1, 5), range(1, 5)):
        r = dd.add(parse(f"linear{x}_{y}(gelu(linear{x}_{y}(x,wb1)),wb2)"))
        assert r.is_new, r
        keys.add(r.key)
    assert len(keys) == len(dd) == 16 and dd.collisions == 0
    # X changes no value inside one block, yet the candidates differ (X blocks are stacked)
    a, b = parse("linear1_2(gelu(linear1_2(x,wb1)),wb2)"), parse("linear2_2(gelu(linear2_2(x,wb1)),wb2)")
    assert torch_equal(evaluate(a), evaluate(b))
    assert fingerprint(a) != fingerprint(b) and not numerically_equal(a, b)


def torch_equal(u, v) -> bool:
    return u.shape == v.shape and bool((u == v).all())


def test_near_equal_functions_stay_apart():
    a = parse("linear1_1(relu(add(leaky_relu(x),sigmoid(linear1_1(x,wb1)))),wb2)")
    b = parse("linear1_1(relu(add(relu(x),sigmoid(linear1_1(x,wb1)))),wb2)")
    va, vb = evaluate(a), evaluate(b)
    assert (va - vb).abs().max() < 0.2 * vb.abs().max()  # close, but not equal
    dd = Deduper(full_proofs=True)
    assert dd.add(a).is_new and dd.add(b).is_new
    assert len(dd) == 2
    assert dd.collisions == (1 if fingerprint(a) == fingerprint(b) else 0)


@pytest.fixture(scope="module")
def reference_collisions():
    """Pairs of non-equivalent valid FFNs whose reference keys (rounded output sums) collide."""
    sp = Space(max_depth=5, max_size=6, blocks=(1,), ratios=(1,))
    first: dict[float, object] = {}
    pairs = []
    for e in enumerate_space(sp):
        k = reference_key(e)
        if k in first and not numerically_equal(first[k], e):
            pairs.append((first[k], e))
        first.setdefault(k, e)
    return pairs


def test_reference_rounded_sum_collides_but_dedup_keeps_them_apart(reference_collisions):
    assert len(reference_collisions) >= 5, "the reference key really does collide"
    for a, b in reference_collisions:
        assert reference_key(a) == reference_key(b)
        dd = Deduper()
        ra, rb = dd.add(a), dd.add(b)
        assert ra.is_new and rb.is_new and ra.key != rb.key, (str(a), str(b))
        assert dd.collisions == (1 if fingerprint(a) == fingerprint(b) else 0)


def test_a_weak_fingerprint_collision_is_counted_not_merged(reference_collisions, monkeypatch):
    """Make the fingerprint as weak as the reference's key: matches must then be rejected by the
    fresh probes and counted as collisions, while true equivalences still merge."""
    monkeypatch.setattr(dedup_mod, "fingerprint", lambda e, probe=None: f"sum={reference_key(e, probe)}")
    dd = Deduper()
    a, b = reference_collisions[0]
    assert dd.add(a).is_new and dd.add(b).is_new
    assert dd.collisions == 1 and len(dd) == 2
    assert dd.lookup(b) == str(dd.add(b).key) != dd.lookup(a)
    dd.add(parse(DIST_A))
    r = dd.add(parse(DIST_B))
    assert not r.is_new and r.proof in ("sympy", "numeric")


def test_fingerprint_and_merging_depend_on_base_ratio():
    std = parse(STANDARD_FFN)
    # add(L, sub(x,x)) is L exactly when d == H (base_ratio 1, Y 1), but cuts L to H channels
    # when d = 4H (base_ratio 4): then the wb2 linear sees a narrower input
    cut = parse("linear1_1(gelu(add(linear1_1(x,wb1),sub(x,x))),wb2)")
    assert fingerprint(std, default_probe(1.0)) == fingerprint(cut, default_probe(1.0))
    assert fingerprint(std, default_probe(4.0)) != fingerprint(cut, default_probe(4.0))
    assert fingerprint(std, default_probe(1.0)) != fingerprint(std, default_probe(4.0))
    same = Deduper(base_ratio=1.0)
    same.add(std)
    assert not same.add(cut).is_new
    apart = Deduper(base_ratio=4.0)
    apart.add(std)
    assert apart.add(cut).is_new and len(apart) == 2


def test_fingerprint_is_stable_and_width_aware():
    e = parse("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)")
    assert fingerprint(e) == fingerprint(parse("linear1_2(relu(mul(x,linear1_2(x,wb1))),wb2)"))
    assert len(fingerprint(e)) == 32
    inner = e.args[0].args[0]  # mul(L, x): width min(H, d) = d = 6 of H = 12 on the probe
    assert evaluate(inner).shape == (16, 6)
    assert evaluate(e).shape == (16, 12)


def test_groups_over_the_examples_file():
    dd = Deduper(full_proofs=True)
    results = [dd.add(parse(t)) for t in example_lines()]
    groups = dd.groups()
    assert len(dd) == 7 and len(groups) == 7
    merged = {k: v for k, v in groups.items() if len(v) > 1}
    assert merged == {
        "linear1_2(relu(linear1_2(mul(x,add(x,tanh(x))),wb1)),wb2)":
            ["linear1_2(relu(linear1_2(mul(x,add(x,tanh(x))),wb1)),wb2)",
             "linear1_2(relu(linear1_2(add(square(x),mul(x,tanh(x))),wb1)),wb2)"]}
    assert [r.proof for r in results].count("identical") == 2
    assert all(k == v[0] for k, v in groups.items())
    assert dd.collisions == 0


# -- DAG view ----------------------------------------------------------------------------------

def test_dag_of_a_published_layer():
    g = to_dag(parse("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"))
    assert nx.is_directed_acyclic_graph(g)
    assert dag_stats(g) == {"nodes": 7, "edges": 7, "depth": 4, "shared": 1,
                            "ops": ["linear1_2", "mul", "relu"]}
    (root,) = g.graph["roots"]
    assert g.nodes[root]["text"] == "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"
    assert sorted(d["arg"] for _, _, d in g.out_edges(root, data=True)) == [0, 1]
    x_nodes = [n for n, d in g.nodes(data=True) if d["op"] == "x"]
    assert len(x_nodes) == 1 and g.in_degree(x_nodes[0]) == 2


def test_dag_of_a_model_spec_shares_across_layers():
    body = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"
    spec = ModelSpec((parse(f"tanh({body})"), parse(f"elu({body})"), parse(body)))
    g = to_dag(spec)
    assert nx.is_directed_acyclic_graph(g)
    roots = g.graph["roots"]
    assert len(roots) == 3 and all(g.in_degree(r) == (2 if g.nodes[r]["text"] == body else 0) for r in roots)
    st = dag_stats(g)
    # tanh, elu + the 6 distinct nodes of the body; the body is the one node with two parents
    assert st["nodes"] == 8 and st["depth"] == 4
    assert st["shared"] == 1
    assert st["ops"] == ["elu", "gelu", "linear1_1", "tanh"]
