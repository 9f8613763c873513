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


@pytest.mark.parametrize("budget, over", [("ffn:51%", True), ("ffn:52%", False), (f"ffn:{STANDARD_FFN}", False),
                                          (f"ffn:{STANDARD_FFN - 1}", True), ("standard", False)])
def test_ffn_budgets_are_shares_of_the_teachers_ffn(tmp_path, search_ecfg, budget, over):
    s = _search(tmp_path, search_ecfg, budget)
    if budget.endswith("%"):
        assert s.budget_params == pytest.approx(float(budget[4:-1]) / 100 * TEACHER_FFN)
    assert s.over_budget(STANDARD_SPEC.broadcast(2)) is over
    half = parse_spec("linear1_2(gelu(linear1_2(x,wb1)),wb2)").broadcast(2)
    assert s.over_budget(half) is False  # half as wide: always within these budgets


def test_non_embedding_budgets(tmp_path, search_ecfg):
    s = _search(tmp_path, search_ecfg, "")
    std = s.prices(STANDARD_SPEC.broadcast(2))
    assert not _search(tmp_path, search_ecfg, f"nonembed:{std.nonembed_params}").over_budget(STANDARD_SPEC.broadcast(2))
    assert _search(tmp_path, search_ecfg, f"nonembed:{std.nonembed_params - 1}").over_budget(STANDARD_SPEC.broadcast(2))


@pytest.mark.parametrize("text", ["ffn:ten%", "total:50%", "gpu:3M", "ffn:-5%", "ffn:0"])
def test_bad_budgets_are_refused(text):
    with pytest.raises(ConfigError, match="budget"):
        Budget.parse(text)


def test_a_budgeted_search_starts_from_the_width_matched_standard_ffn(tmp_path, search_ecfg):
    # 30 % of the teacher's FFN (2,553): linear1_2's standard FFN (2 x 1,136) fits, linear1_1's does not
    assert str(_search(tmp_path, search_ecfg, "ffn:30%").standard().layers[0]) == "linear1_2(gelu(linear1_2(x,wb1)),wb2)"
    assert _search(tmp_path, search_ecfg, "").standard() == STANDARD_SPEC.broadcast(2)
