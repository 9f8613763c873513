"""Budgets that count (issue 24 item 3): FFN-only and non-embedding budgets, priced by the cost
model exactly as the evaluator measures the built student."""
from __future__ import annotations

import pytest
from conftest_search import easy_glue, kd_cache, one_thread, quiet, scfg, search_ecfg, tiny_teacher  # noqa: F401

from exprsearch.errors import ConfigError
from exprsearch.kd.evaluate import Evaluator
from exprsearch.lang.parsing import parse_spec
from exprsearch.lang.standard import STANDARD_SPEC
from exprsearch.search.pricing import Budget
from exprsearch.search.search import Search
from exprsearch.search.store import Store

pytestmark = pytest.mark.usefixtures("one_thread")

# the tiny teacher: H = 32, intermediate 64, 2 layers; its FFNs: 2 x (32*64 + 64 + 64*32 + 32 + 2*32) = 8,512
TEACHER_FFN = 2 * (32 * 64 + 64 + 64 * 32 + 32 + 2 * 32)
# the standard FFN at D = H = 32: 2 x (32*32 + 32 + 32*32 + 32 + 2*32) = 4,352, i.e. 51.1 % of the teacher's
STANDARD_FFN = 2 * (32 * 32 + 32 + 32 * 32 + 32 + 2 * 32)


def _search(tmp_path, ecfg, budget: str) -> Search:
    return Search(Store(tmp_path / "runs.db"), scfg(budget_params=budget), ecfg, log=quiet, progress=False)


def test_prices_equal_what_the_evaluator_measures(tmp_path, search_ecfg):
    s = _search(tmp_path, search_ecfg, "")
    ev = Evaluator(search_ecfg, log=quiet)
    for text in ("linear1_1(gelu(linear1_1(x,wb1)),wb2)", "linear2_3(relu(mul(linear2_3(x,wb1),x)),wb2)"):
        spec = parse_spec(text).broadcast(2)
        p, r = s.prices(spec), ev.evaluate(spec)
        assert (p.params, p.ffn_params) == (r.params, r.ffn_params)
    std = s.prices(STANDARD_SPEC.broadcast(2))
    assert std.ffn_params == STANDARD_FFN
    assert std.nonembed_params == std.params - ((30522 + 128 + 2) * 32 + 2 * 32)


# the standard FFN at d = 16 (linear1_2 at D = H = 32): 2 x (32*16 + 16 + 16*32 + 32 + 2*32) = 2,272
HALF_FFN = 2 * (32 * 16 + 16 + 16 * 32 + 32 + 2 * 32)
HALF = "linear1_2(gelu(linear1_2(x,wb1)),wb2)"


@pytest.mark.parametrize("budget, limit, baseline", [
    ("ffn:100%", STANDARD_FFN, "linear1_1(gelu(linear1_1(x,wb1)),wb2)"),
    ("ffn:50%", HALF_FFN, HALF),                        # biases and LayerNorm included: the baseline fits exactly
    ("ffn:d=16", HALF_FFN, HALF),
    ("ffn:25%", 2 * (32 * 8 + 8 + 8 * 32 + 32 + 64), "linear1_4(gelu(linear1_4(x,wb1)),wb2)"),
    (f"ffn:{STANDARD_FFN - 1}", STANDARD_FFN - 1, HALF),  # a count: the widest standard FFN within it
    ("standard", None, "linear1_1(gelu(linear1_1(x,wb1)),wb2)")])
def test_ffn_budgets_are_defined_by_the_standard_ffn_they_must_not_exceed(tmp_path, search_ecfg, budget, limit,
                                                                            baseline):
    s = _search(tmp_path, search_ecfg, budget)
    if limit is not None:
        assert s.budget_params == limit
    base = s.standard()
    assert str(base.layers[0]) == baseline and len(base) == 2
    assert not s.over_budget(base)  # the width-matched baseline fits, exactly where the budget is a width
    if budget.endswith("%") or "d=" in budget:
        assert s.prices(base).ffn_params == s.budget_params


@pytest.mark.parametrize("budget, match", [("ffn:40%", "not a width of the space"), ("ffn:d=12", "d = 12"),
                                           ("ffn:500", "no standard FFN fits"), ("nonembed:1%", "no standard FFN fits")])
def test_a_budget_no_standard_ffn_fits_is_an_error_not_a_fallback(tmp_path, search_ecfg, budget, match):
    with pytest.raises(ConfigError, match=match) as err:
        _search(tmp_path, search_ecfg, budget)
    if "fits" in match:
        assert "linear1_4(gelu(linear1_4(x,wb1)),wb2)" in str(err.value)  # names the smallest
    assert not (tmp_path / "runs.db").exists() or Store(tmp_path / "runs.db").runs() == []  # no run stored


def test_non_embedding_budgets(tmp_path, search_ecfg):
    s = _search(tmp_path, search_ecfg, "")
    std = s.prices(STANDARD_SPEC.broadcast(2))
    assert not _search(tmp_path, search_ecfg, f"nonembed:{std.nonembed_params}").over_budget(STANDARD_SPEC.broadcast(2))
    assert _search(tmp_path, search_ecfg, f"nonembed:{std.nonembed_params - 1}").over_budget(STANDARD_SPEC.broadcast(2))


@pytest.mark.parametrize("text", ["ffn:ten%", "total:50%", "gpu:3M", "ffn:-5%", "ffn:0", "ffn:nan", "nan",
                                  "nonembed:d=5", "ffn:d=x", "ffn:inf%"])
def test_bad_budgets_are_refused(text):
    with pytest.raises(ConfigError, match="budget"):
        Budget.parse(text)


def test_a_budgeted_search_starts_from_the_width_matched_standard_ffn(tmp_path, search_ecfg):
    assert str(_search(tmp_path, search_ecfg, "ffn:50%").standard().layers[0]) == HALF
    assert _search(tmp_path, search_ecfg, "").standard() == STANDARD_SPEC.broadcast(2)


def test_the_baseline_is_evaluated_marked_and_compared_side_by_side(tmp_path, search_ecfg):
    from conftest_search import run_search

    from exprsearch.search.leaderboard import leaderboard_table, standard_row
    search, _, rows = run_search(tmp_path / "runs.db", search_ecfg, budget_params="ffn:50%", candidates=3,
                                 sampler="random")
    base = [r for r in rows if standard_row(r)]
    assert [r["spec"] for r in base] == [str(search.standard())] and base[0]["config"]["baseline"] is True
    assert base[0]["ffn_params"] == HALF_FFN  # trained like any candidate, at exactly the budget
    assert not any(standard_row(r) for r in rows if r is not base[0])
    assert search.store.run(search.run_id)["config"]["baseline"] == str(search.standard())
    line = leaderboard_table(rows).splitlines()[-1]
    assert "standard FFN" in line and f"vs {HALF_FFN / 1e6:.3f}M" in line
