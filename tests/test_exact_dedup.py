"""Exact dedup (issue 31, items 1, 2 and 4): a merge never rests on numerically saturated values
(towers of squares under a bounded op agree at every probe point yet differ near |x| = 1); the
search dedups at its own D / H; sympy works once per expression and within a total budget."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import sympy
import torch
from _support import STANDARD_FFN
from conftest_search import easy_glue, kd_cache, quiet, scfg, search_ecfg, tiny_teacher  # noqa: F401

import exprsearch.lang.symbolic as symbolic
from exprsearch import Deduper, parse
from exprsearch.lang.numeric import Probe, evaluate_at, numerically_equal
from exprsearch.lang.parsing import parse_spec
from exprsearch.lang.saturation import saturated
from exprsearch.lang.validity import parse_one


def nest(op: str, inner: str, k: int) -> str:
    for _ in range(k):
        inner = f"{op}({inner})"
    return inner


ISSUE_PAIR = [f"linear1_4(mul(linear1_4(x,wb1),sigmoid({nest('square', 'x', k)})),wb2)" for k in (12, 13)]


def test_the_issue_tower_pair_stays_apart_and_really_differs():
    a, b = (parse(t) for t in ISSUE_PAIR)
    dd = Deduper(use_sympy=False)
    assert dd.add(a).is_new and dd.add(b).is_new and len(dd) == 2
    assert not numerically_equal(a, b)
    # independent of the probes: at x = 1.0001 the two FFNs differ (x^4096 = 1.5, x^8192 = 2.3)
    x = torch.full((1, 12), 1.0001, dtype=torch.float64)
    assert float((evaluate_at(a, x) - evaluate_at(b, x)).abs().max()) > 0.01


TEMPLATES = ["linear1_4(mul(linear1_4(x,wb1),{b}({t})),wb2)", "linear1_2(add(linear1_2(x,wb1),{b}({t})),wb2)",
             "linear2_1(gelu(linear2_1(mul(x,{b}({t})),wb1)),wb2)", "linear1_3(max(linear1_3(x,wb1),{b}({t})),wb2)"]


@pytest.mark.parametrize("bounded", ["sigmoid", "tanh", "elu", "gelu", "swish"])
@pytest.mark.parametrize("op, base", [("square", "x"), ("sqrelu", "x"), ("square", "tanh(x)"), ("sqrelu", "add(x,x)")])
def test_towers_under_a_bounded_op_never_merge_depth_k_with_k_plus_1(bounded, op, base):
    dd = Deduper(use_sympy=False)
    for template in TEMPLATES:
        for k in range(4, 15):
            a, b = (parse(template.format(b=bounded, t=nest(op, base, n)), strict=False) for n in (k, k + 1))
            ra, rb = dd.add(a), dd.add(b)
            assert ra.key != rb.key or ra.canonical is rb.canonical, (str(a), str(b))


@pytest.mark.parametrize("pair", [
    ("linear1_2(relu(linear1_2(mul(x,add(x,tanh(x))),wb1)),wb2)",   # distributivity
     "linear1_2(relu(linear1_2(add(square(x),mul(x,tanh(x))),wb1)),wb2)"),
    (STANDARD_FFN.replace("(x,wb1)", "(relu(x),wb1)"),               # |x| - relu(-x) == relu(x)
     STANDARD_FFN.replace("(x,wb1)", "(sub(max(x,neg(x)),relu(neg(x))),wb1)")),
    (STANDARD_FFN.replace("(x,wb1)", "(relu(x),wb1)"),               # gelu(x) <= relu(x)
     STANDARD_FFN.replace("(x,wb1)", "(max(gelu(x),relu(x)),wb1)")),
    ("linear1_4(elu(max(relu(x),linear1_4(swish(x),wb1))),wb2)",     # elu is the identity on >= 0
     "linear1_4(leaky_relu(max(relu(x),linear1_4(swish(x),wb1))),wb2)"),
])
def test_equal_functions_still_merge_numerically(pair):
    dd = Deduper(use_sympy=False)
    a, b = (dd.add(parse(t)) for t in pair)
    assert a.is_new and (b.is_new, b.proof, b.key) == (False, "numeric", a.key)


def test_saturation_marks_where_a_value_hides_its_input():
    p = Probe(points=8)
    assert not saturated(parse_one("relu(x)"), p).any()          # relu's flat half is exact
    x = p.tensors["x"]
    both = saturated(parse_one("max(x,tanh(x))"), p)
    assert both[[3, 7]].any() and not both[x > 0].any()   # tanh(50) == 1.0 is max's smaller operand: exact
    assert saturated(parse_one("tanh(x)"), p)[x > 30].all()
    tower = saturated(parse_one(nest("square", "x", 12)), p)   # x^4096: 0 or inf, but near |x| = 1
    assert tower[((x.abs() - 1).abs() > 0.2) & (x != 0)].all() and not tower[(x.abs() - 1).abs() < 0.03].any()
    assert saturated(parse_one(f"sigmoid({nest('square', 'x', 12)})"), p)[1:].all()  # 1 near |x| = 1 too


# -- item 2: the search's dedup sees the run's widths -------------------------------------------

CUT = "linear1_1(add(gelu(linear1_1(x,wb1)),sub(x,x)),wb2)"  # add cuts wb1's d channels to H


def test_the_search_dedups_at_its_own_base_width(tmp_path, search_ecfg, tiny_teacher):  # noqa: F811
    from exprsearch.search.search import Search
    from exprsearch.search.store import Store
    hidden = json.loads((tiny_teacher / "config.json").read_text())["hidden_size"]
    std, cut = parse_spec(STANDARD_FFN), parse_spec(CUT)
    keys, params = {}, {}
    for d in (None, 4 * hidden):
        s = Search(Store(tmp_path / f"{d}.db"), scfg(), replace(search_ecfg, base_width=d), log=quiet, progress=False)
        keys[d] = (s.key(std.broadcast(2)), s.key(cut.broadcast(2)))
        params[d] = (s.price(std.broadcast(2))[0], s.price(cut.broadcast(2))[0])
    assert keys[None][0] == keys[None][1] and params[None][0] == params[None][1]      # D = H: one FFN
    assert keys[4 * hidden][0] != keys[4 * hidden][1] and params[4 * hidden][0] != params[4 * hidden][1]


# -- item 4: sympy once per expression, within a total budget ----------------------------------

EQUAL_BODIES = ["relu(x)", "max(gelu(x),relu(x))", "relu(max(x,leaky_relu(x)))", "max(relu(x),mul(x,sigmoid(x)))",
                "max(relu(x),min(gelu(x),swish(neg(x))))"]


def equal_ffns() -> list:
    return [parse(STANDARD_FFN.replace("(x,wb1)", f"({b},wb1)")) for b in EQUAL_BODIES]


def test_sympy_that_gives_up_is_asked_once_per_expression_not_per_pair(monkeypatch):
    calls = []

    def out_of_time(e, *a, **k):  # every simplify "runs out of time"
        calls.append(e)
        raise symbolic._OutOfTime()

    monkeypatch.setattr(sympy, "simplify", out_of_time)
    dd = Deduper(full_proofs=True)
    results = [dd.add(e) for e in equal_ffns()]
    assert all(r.is_new for r in results)  # sympy gave up on each: kept apart, as before
    assert len(calls) == len(EQUAL_BODIES)  # once per expression (per pair: 10)


def test_past_its_budget_sympy_is_not_asked_and_the_probes_decide(monkeypatch):
    monkeypatch.setattr(sympy, "simplify", lambda *a, **k: pytest.fail("sympy asked past its budget"))
    monkeypatch.setattr(sympy, "expand", lambda *a, **k: pytest.fail("sympy asked past its budget"))
    dd = Deduper(full_proofs=True, sympy_seconds=0.0)
    results = [dd.add(e) for e in equal_ffns()]
    assert results[0].is_new and all((r.is_new, r.proof) == (False, "numeric") for r in results[1:])
    assert len(dd) == 1
