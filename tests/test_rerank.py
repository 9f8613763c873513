"""Re-ranking: a stage's top candidates re-scored over more training seeds (store, backend, search).

Every evaluation is a real warm-up KD run on the tiny teacher (see conftest_search).
"""
from __future__ import annotations

import pytest
from conftest_search import easy_glue, kd_cache, one_thread, quiet, run_search, scfg, search_ecfg, tiny_teacher  # noqa: F401

from exprsearch.errors import ConfigError
from exprsearch.kd.evaluate import Evaluator
from exprsearch.lang.standard import STANDARD_FFN
from exprsearch.search.backends import InlineBackend
from exprsearch.lang.parsing import parse_spec
from exprsearch.search.leaderboard import leaderboard_table
from exprsearch.search.search import Search
from exprsearch.search.store import Store

STANDARD_SPEC = str(STANDARD_FFN)  # the standard FFN's text

pytestmark = pytest.mark.usefixtures("one_thread")


def _row(key: str, score: float, acc: float) -> dict:
    return {"key": key, "spec": key, "status": "ok", "score": score, "metrics": {"SST-2": {"acc": acc, "acc_std": 0.01}}}


def test_store_averages_a_reseeded_row_and_keeps_the_first_seed_for_replay(tmp_path):
    st = Store(tmp_path / "runs.db")
    run = st.new_run({})
    st.add(run, _row("[a]", 60.0, 0.60))
    st.add(run, _row("[b]", 59.0, 0.59))
    assert st.add_reseed(run, "[a]", 1, _row("[a]", 58.0, 0.58))
    assert not st.add_reseed(run, "[a]", 1, _row("[a]", 99.0, 0.99))  # one result per (key, seed)
    st.add_reseed(run, "[a]", 2, {"status": "failed", "score": None, "metrics": {}})  # a failed seed is left out
    a, b = st.candidates(run)
    assert a["score"] == pytest.approx(59.0) and a["seed_scores"] == [60.0, 58.0]
    assert a["metrics"]["SST-2"]["acc"] == pytest.approx(0.59) and a["seed_std"] == pytest.approx(2 ** 0.5)
    assert "seed_scores" not in b and b["score"] == 59.0
    assert [r["score"] for r in st.candidates(run, seeds=False)] == [60.0, 59.0]
    assert sorted(st.reseeds(run)["[a]"]) == [1, 2]
    assert "(2 seeds ± 1.41)" in leaderboard_table(st.candidates(run))


def test_inline_backend_passes_the_seed_to_the_evaluator(search_ecfg, monkeypatch):
    seen = []
    monkeypatch.setattr(Evaluator, "evaluate_many", lambda ev, specs, seed=None, **kw: seen.append(seed) or [])
    backend = InlineBackend(search_ecfg, log=quiet)
    backend.run([], seed=5)
    backend.run([("k", parse_spec(STANDARD_SPEC))], seed=7)
    backend.run([("k", parse_spec(STANDARD_SPEC))])
    assert seen == [7, None]


def test_search_reranks_its_top_candidates_and_a_resume_repeats_nothing(tmp_path, search_ecfg, monkeypatch):
    calls: list[tuple[int | None, int]] = []
    orig = Evaluator.evaluate_many

    def spy(ev, specs, seed=None, **kw):
        calls.append((seed, len(specs)))
        return orig(ev, specs, seed=seed, **kw)

    monkeypatch.setattr(Evaluator, "evaluate_many", spy)
    search, summary, _ = run_search(tmp_path / "runs.db", search_ecfg, candidates=6, rerank=2, rerank_seeds=2)
    store, run = search.store, search.run_id
    extra = [c for c in calls if c[0] is not None]
    assert {s for s, _ in extra} == {search_ecfg.seed + 1, search_ecfg.seed + 2}
    assert summary["stats"]["reseeded"] == sum(n for _, n in extra) >= 4
    ranked = sorted(store.candidates(run, status="ok"), key=lambda r: -r["score"])
    assert all(len(r["seed_scores"]) == 3 for r in ranked[:2])  # the top 2 are 3-seed means
    assert ranked[0]["key"] == search.best()["key"] and "seed_std" in search.best()
    reseeds = store.reseeds(run)
    assert all(sorted(by_seed) == [search_ecfg.seed + 1, search_ecfg.seed + 2] for by_seed in reseeds.values())
    assert {r["key"] for r in ranked[:2]} <= set(reseeds)

    calls.clear()
    resumed = Search.resume(store, run, log=quiet, progress=False)
    resumed.run()
    assert calls == [] and store.reseeds(run) == reseeds  # everything replays from the store


def test_rerank_options_are_checked():
    with pytest.raises(ConfigError, match="rerank"):
        scfg(rerank=-1)


def test_rerank_also_rescores_the_standard_ffn_and_logs_failures(tmp_path, search_ecfg, monkeypatch):
    from exprsearch.search.leaderboard import standard_row
    orig = Evaluator.evaluate_many

    def flaky(ev, specs, seed=None, **kw):  # every re-evaluation with seed + 2 fails
        res = orig(ev, specs, seed=seed, **kw)
        if seed == search_ecfg.seed + 2:
            for r in res:
                r.status, r.score, r.reason = "failed", None, "boom"
        return res

    monkeypatch.setattr(Evaluator, "evaluate_many", flaky)
    lines: list[str] = []
    store = Store(tmp_path / "runs.db")
    search = Search(store, scfg(candidates=4, rerank=1, rerank_seeds=2), search_ecfg, log=lines.append, progress=False)
    search.run()
    reseeds = store.reseeds(search.run_id)
    standard = next(r for r in store.candidates(search.run_id) if standard_row(r))
    assert standard["key"] in reseeds and len(standard["seed_scores"]) == 2  # seed + 2 failed: left out
    assert any("re-rank:" in m and "failed" in m for m in lines)
