"""Latency a user can compare (issue 33 item 5): each candidate is timed beside the standard-FFN
student, repeat by repeat, and stored with its median, spread and ratio; identical students tie on
the Pareto front whatever load each met, and a bare single timing never puts a row on it; the
report shows every score with its ± and links the model cards relatively."""
from __future__ import annotations

import pytest
import torch
from conftest_search import easy_glue, kd_cache, one_thread, quiet, run_search, search_ecfg, tiny_teacher  # noqa: F401

import exprsearch.compiler.timing as timing
from exprsearch.search.leaderboard import LATENCY_FLOOR, leaderboard_table, pareto

STD = "[linear1_1(gelu(linear1_1(x,wb1)),wb2)]"


def _row(key, score, ms, rel=None, spread=0.0, params=17_400_000):
    lat = {} if rel is None else {"ms": ms, "spread_ms": 1.0, "repeats": 5, "ref_ms": ms / rel, "rel": rel,
                                  "rel_spread": spread}
    return {"key": key, "spec": STD, "status": "ok", "score": score, "params": params, "latency_ms": ms,
            "latency": lat, "metrics": {"SST-2": {"heldout_acc": score / 100, "heldout_acc_std": 0.01,
                                                  "score": score / 100}}}


def test_a_single_lucky_timing_puts_no_row_on_the_front():
    # the leaderboard: identical standard-FFN students timed once each under a changing load
    rows = [_row(k, s, ms) for k, s, ms in (("a", 78.0, 944), ("b", 77.9, 936), ("c", 77.8, 133), ("d", 77.7, 920),
                                            ("e", 77.6, 19))]
    assert [r["key"] for r in pareto(rows)] == ["a"]


def test_identical_students_tie_within_their_spread_a_real_difference_counts():
    rows = [_row("a", 78.0, 944, 1.00, 0.02), _row("b", 77.9, 19, 0.97, 0.02)]  # 3 % apart: within the spread
    assert [r["key"] for r in pareto(rows)] == ["a"]
    faster = _row("c", 77.0, 500, 1.00 - 4 * LATENCY_FLOOR, 0.02)  # 20 % faster beyond both spreads
    assert [r["key"] for r in pareto(rows + [faster])] == ["a", "c"]
    noisy = _row("d", 77.5, 400, 0.80, 0.25)  # 20 % faster, but its own repeats spread by 25 %
    assert [r["key"] for r in pareto(rows + [noisy])] == ["a"]
    assert "944.0 ± 1.0 (1.00 ± 0.02 x std)" in leaderboard_table(rows)


def test_the_ratio_is_the_median_of_back_to_back_pairs(monkeypatch):
    calls = []
    # a burst of load slows repeat 3 of both students 20-fold; the candidate is 1.5x the reference
    clock = iter([0.015, 0.010, 0.010, 0.015, 0.300, 0.200, 0.010, 0.015, 0.015, 0.010])

    def fake(fn, device, warmup=0, iters=1, repeats=1, bf16=True):
        calls.append(fn)
        return next(clock)

    monkeypatch.setattr(timing, "time_call", fake)
    from transformers import BertConfig, BertForSequenceClassification
    cfg = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=16)
    lat = timing.paired_latency(BertForSequenceClassification(cfg), BertForSequenceClassification(cfg), "cpu", 2, 8)
    assert len(calls) == 10 and calls[0] is calls[3] and calls[1] is calls[2]  # the order alternates
    assert lat.rel == pytest.approx(1.5) and lat.ms == pytest.approx(15.0) and lat.ref_ms == pytest.approx(10.0)
    assert lat.spread_ms == pytest.approx((300 - 15) / 2) and lat.rel_spread == pytest.approx(0.0)


def test_a_search_stores_each_latency_with_its_spread_and_ratio(tmp_path, search_ecfg):  # noqa: F811
    from exprsearch.search.store import Store
    search, _, rows = run_search(tmp_path / "runs.db", search_ecfg, candidates=3)
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok
    for r in ok:
        lat = r["latency"]
        assert set(lat) == {"ms", "spread_ms", "repeats", "ref_ms", "rel", "rel_spread"}
        assert lat["ms"] == r["latency_ms"] and lat["repeats"] == 5 and lat["spread_ms"] >= 0 and lat["rel"] > 0
        assert lat["ref_ms"] > 0 and lat["rel_spread"] >= 0
    again = Store(tmp_path / "runs.db", readonly=True).candidates(search.run_id)
    assert [r["latency"] for r in again if r["status"] == "ok"] == [r["latency"] for r in ok]


def test_the_report_keeps_every_plus_minus(tmp_path, search_ecfg):  # noqa: F811
    pytest.importorskip("matplotlib")
    from exprsearch.search.report import write_report
    from exprsearch.search.store import Store
    search, _, rows = run_search(tmp_path / "runs.db", search_ecfg, candidates=3)
    store = Store(tmp_path / "runs.db")
    (tmp_path / "models" / "student").mkdir(parents=True)
    store.add_artifact(search.run_id, "SST-2", str(tmp_path / "models" / "student"), STD, 80.0, 1.5, {})
    page = write_report(store, search.run_id, tmp_path / "reports" / "run.html").read_text()
    leaderboard = page.split('id="leaderboard"')[1].split('id="pareto"')[0]
    n_ok = sum(r["status"] == "ok" for r in rows)
    assert leaderboard.count("<tr>") == n_ok + 1 and leaderboard.count("±") >= 2 * n_ok  # score and latency
    assert "x std" in leaderboard
    assert 'href="../models/student/README.md"' in page and "file://" not in page
