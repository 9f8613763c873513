"""Leaderboard and report truths (issue 25 item 4), on a store written by hand: the Pareto front
compares trained rows on what they measured, the proxy plot plots re-scored seeds, spec cells
show underscores, the nonlinearity figure says how many layers it shows, distilled students
are linked, and a run whose start fails is not left 'running'."""
from __future__ import annotations

import pytest

from exprsearch.cli.main import main
from exprsearch.search.leaderboard import pareto, pareto_table
from exprsearch.search.store import Store

SIX = ("[linear1_3(relu(mul(linear1_3(sigmoid(x),wb1),tanh(x))),wb2); linear1_2(gelu(linear1_2(x,wb1)),wb2); "
       "linear1_2(tanh(linear1_2(x,wb1)),wb2); linear1_1(elu(linear1_1(x,wb1)),wb2); "
       "linear2_2(relu(linear2_2(x,wb1)),wb2); linear1_4(swish(linear1_4(x,wb1)),wb2)]")


def _row(key: str, score: float, params: int, latency: float | None, **kw) -> dict:
    return {"key": key, "spec": kw.pop("spec", SIX), "status": "ok", "score": score, "params": params,
            "latency_ms": latency, "metrics": {"SST-2": {"acc": score / 100, "acc_std": 0.01}}, **kw}


@pytest.fixture
def store(tmp_path):
    st = Store(tmp_path / "runs.db")
    run = st.new_run({"search": {}, "eval": {"tasks": ["SST-2"]}})
    st.add(run, _row("a", 78.78, 16_540_000, 11.2), stage=2)
    st.add(run, _row("b", 77.52, 17_400_000, 9.4, spec="linear1_1(gelu(linear1_1(x,wb1)),wb2)"), stage=1)
    st.add(run, _row("c@proxy", 73.05, 16_540_000, None), stage=3, worker="supernet")
    for key, scores in (("a", (78.0, 79.1)), ("b", (77.0, 76.9))):
        for seed, s in enumerate(scores, 1):
            st.add_reseed(run, key, seed, {"status": "ok", "score": s, "metrics": {"SST-2": {"acc": s / 100}}})
    st.add(run, _row("d", 76.0, 16_000_000, 12.0), stage=1)
    st.add_reseed(run, "d", 1, {"status": "ok", "score": 75.0, "metrics": {"SST-2": {"acc": 0.75}}})
    return st, run


def test_a_supernet_scored_row_is_not_on_the_front(store):
    st, run = store
    front = pareto(st.candidates(run))
    assert "c@proxy" not in [r["key"] for r in front]
    assert "73.05" not in pareto_table(st.candidates(run))


def test_the_report_tells_what_it_shows(store, tmp_path):
    pytest.importorskip("matplotlib")
    from exprsearch.search.report import write_report
    st, run = store
    st.add_artifact(run, "SST-2", str(tmp_path / "student"), SIX, 79.1, 0.4, {"chosen_seed": 0})
    page = write_report(st, run, tmp_path / "report.html").read_text()
    assert "Proxy (one seed) vs re-scored mean" in page and "first logged KD loss" not in page
    assert "4 of the best model&#x27;s 6 distinct layer expressions" in page or \
           "4 of the best model's 6 distinct layer expressions" in page
    assert "overflow-wrap:anywhere" in page and "line-height:1.5" in page
    assert 'href="student/README.md"' in page and "file://" not in page and "79.10 ± 0.40" in page


def test_a_run_whose_start_fails_is_not_left_running(tmp_path, capsys):
    store = tmp_path / "runs.db"
    rc = main(["search", "--store", str(store), "--device", "nonsense", "--candidates", "2", "--stages", "1"])
    assert rc == 2 and "error:" in capsys.readouterr().err
    if store.exists():
        assert main(["show", "list", "--store", str(store)]) == 0
        assert "running" not in capsys.readouterr().out


def test_the_report_of_a_run_whose_best_spec_this_version_cannot_read(tmp_path):
    # a row written by a newer version (an operator this one lacks), or damaged: the report said
    # "'NoneType' object has no attribute 'layers'" (found by mypy: row_spec returns None for it)
    pytest.importorskip("matplotlib")
    from exprsearch.search.report import write_report
    st = Store(tmp_path / "runs.db")
    run = st.new_run({"search": {}, "eval": {"tasks": ["SST-2"]}})
    st.add(run, _row("new", 80.0, 16_000_000, 10.0, spec="[linear1_2(newop(linear1_2(x,wb1)),wb2)]"), stage=1)
    st.add(run, _row("b", 77.52, 17_400_000, 9.4, spec="linear1_1(gelu(linear1_1(x,wb1)),wb2)"), stage=1)
    page = write_report(st, run, tmp_path / "report.html").read_text()
    assert "newop" in page and "this version cannot read" in page
