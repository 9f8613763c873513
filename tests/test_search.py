"""The progressive search end to end on a tiny teacher: stages, dedup, reuse across runs,
budgets, kill -9 and resume, determinism, the Ray backend and the command line.

Every evaluation is a real warm-up KD run (2 layers, H = 32, 5 steps; ~0.3 s on one thread).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest_search import (  # noqa: F401
    EvalSpy,
    easy_glue,
    eval_spy,
    kd_cache,
    key_score,
    one_thread,
    quiet,
    run_search,
    scfg,
    search_ecfg,
    tiny_teacher,
)

from exprsearch.compiler import StudentConfig, build_student
from exprsearch.cli import main as cli
from exprsearch.errors import ConfigError
from exprsearch.lang.standard import STANDARD_FFN
from exprsearch.lang.expr import ModelSpec
from exprsearch.lang.parsing import parse_spec
from exprsearch.search.leaderboard import leaderboard_table, pareto, pareto_table
from exprsearch.search.search import Search, eval_hash, parse_budget
from exprsearch.search.stage3 import with_xy
from exprsearch.search.store import Store

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent
STANDARD_SPEC = str(STANDARD_FFN)  # the standard FFN's text
STD2 = f"[{STANDARD_SPEC}; {STANDARD_SPEC}]"


def _xy(e) -> tuple[int, int]:
    op = e.linears()[0].op
    return op.blocks, op.ratio


def _body(e):
    """An expression with its X_Y normalised away (stage 3 changes X_Y only)."""
    return with_xy(e, 1, 1)


# -- (a) the three stages end to end ------------------------------------------------------------

def test_three_stage_search_end_to_end(tmp_path, search_ecfg):
    search, summary, rows = run_search(tmp_path / "runs.db", search_ecfg, stages="1,2,3", candidates=4,
                                       stage2_candidates=2, stage3_candidates=3, supernet_steps=3,
                                       multitask_steps=3, backend="local", workers=1)
    store = search.store
    assert store.run(search.run_id)["status"] == "done"
    by_stage = {s: [r for r in rows if r["stage"] == s] for s in (1, 2, 3)}
    assert len(by_stage[1]) == 4 and len(by_stage[2]) == 2
    assert all(r["status"] == "ok" and r["score"] is not None and r["params"] > 0 for r in rows)
    assert [r["seq"] for r in rows] == list(range(len(rows)))
    assert summary["stats"]["evaluated"] == 6 and summary["stats"]["failed"] == 0
    assert summary["best"]["score"] == max(r["score"] for r in rows)

    # stage 1 starts from the standard FFN; stage 2 keeps each layer's X_Y of the stage-1 best
    assert by_stage[1][0]["spec"] == STD2
    best1 = max(by_stage[1], key=lambda r: r["score"])
    xy1 = [_xy(e) for e in parse_spec(best1["spec"], strict=False).layers]
    for r in by_stage[2]:
        assert [_xy(e) for e in parse_spec(r["spec"], strict=False).layers] == xy1
    assert not {r["key"] for r in by_stage[1]} & {r["key"] for r in by_stage[2]}

    # stage 3: proxy rows (X_Y variants of one set of bodies) and one multi-task row
    proxies = [r for r in by_stage[3] if r["key"].endswith("@proxy")]
    multi = [r for r in by_stage[3] if r["key"].endswith("@multitask")]
    assert 1 <= len(proxies) <= 3 and len(multi) == 1 and len(proxies) + 1 == len(by_stage[3])
    bodies = {tuple(_body(e) for e in parse_spec(r["spec"], strict=False).layers) for r in proxies}
    assert len(bodies) == 1
    winner = max(proxies, key=lambda r: r["score"])
    assert multi[0]["spec"] == winner["spec"] and multi[0]["key"] == winner["key"].replace("@proxy", "@multitask")
    assert set(multi[0]["metrics"]) == {"SST-2"} and multi[0]["eval_hash"] == search.hash + "-multitask"
    assert all(r["eval_hash"] == search.hash + "-proxy" for r in proxies)
    for r in by_stage[3]:  # priced like every candidate: the leaderboard shows its FFN parameters
        assert r["ffn_params"] == search.prices(parse_spec(r["spec"], strict=False)).ffn_params > 0

    # leaderboard and Pareto front render the stored rows
    lb = leaderboard_table(rows, top=3)
    assert "score" in lb and "spec" in lb
    top = sorted(rows, key=lambda r: -r["score"])[:3]
    assert all(f"{round(r['score'], 2)}" in lb for r in top)
    front = pareto(rows)
    assert front and front[0]["score"] == summary["best"]["score"]
    pt = pareto_table(rows)
    assert all(r["spec"][:50] in pt for r in front)


def test_invalid_stage_list_is_a_config_error(tmp_path, search_ecfg):
    with pytest.raises(ConfigError, match="choose from 1,2,3"):
        run_search(tmp_path / "runs.db", search_ecfg, stages="1,4")


@pytest.mark.parametrize("sampler", ["random", "lanas"])
def test_other_samplers_search_end_to_end(tmp_path, search_ecfg, sampler, eval_spy):
    search, summary, rows = run_search(tmp_path / "runs.db", search_ecfg, sampler=sampler, candidates=3)
    assert len(rows) == 3 and len({r["key"] for r in rows}) == 3 and rows[0]["spec"] == STD2
    assert search.store.run(search.run_id)["config"]["search"]["sampler"] == sampler
    assert len(eval_spy.specs) == 3 == summary["stats"]["evaluated"]


# -- (b) dedup within a run ---------------------------------------------------------------------

A = "[linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2); " + STANDARD_SPEC + "]"
A2 = "[linear1_2(relu(mul(x,linear1_2(x,wb1))),wb2); linear1_1(gelu(linear1_1(max(x,x),wb1)),wb2)]"
B = "[" + STANDARD_SPEC + "; linear2_2(add(x,linear2_2(x,wb1)),wb2)]"
B2 = "[linear1_1(gelu(linear1_1(max(x,min(x,x)),wb1)),wb2); linear2_2(add(linear2_2(x,wb1),x),wb2)]"
C = "[linear1_1(gelu(linear1_1(mul(x,x),wb1)),wb2); " + STANDARD_SPEC + "]"
C2 = "[linear1_1(gelu(linear1_1(square(x),wb1)),wb2); linear1_1(gelu(linear1_1(x,wb1)),wb2)]"
SCRIPT = [A, A2, B, A, B2, C, C2]  # three classes, each also written another way


class ScriptedSampler:
    """Proposes SCRIPT over and over (so after three candidates every proposal is a duplicate)."""

    name = "scripted"

    def __init__(self) -> None:
        self.i = 0
        self.observed: list[tuple[str, float | None]] = []

    def propose(self) -> ModelSpec:
        spec = parse_spec(SCRIPT[self.i % len(SCRIPT)])
        self.i += 1
        return spec

    def observe(self, spec: ModelSpec, score: float | None) -> None:
        self.observed.append((str(spec), score))

    def duplicate(self, spec: ModelSpec) -> None:  # the Sampler interface: nothing to learn here
        pass


def test_equivalent_specs_are_evaluated_once(tmp_path, search_ecfg, eval_spy, monkeypatch):
    import exprsearch.search.search as search_mod
    sampler = ScriptedSampler()
    monkeypatch.setattr(search_mod, "make_sampler", lambda *a, **kw: sampler)
    store = Store(tmp_path / "runs.db")
    lines: list[str] = []
    search = Search(store, scfg(candidates=4, seed_standard=False), search_ecfg, log=lines.append, progress=False)
    summary = search.run()
    rows = store.candidates(search.run_id)
    # differently written equivalents map to one key
    for x, y in ((A, A2), (B, B2), (C, C2)):
        assert search.key(parse_spec(x)) == search.key(parse_spec(y))
    assert len({search.key(parse_spec(s)) for s in SCRIPT}) == 3
    # each class evaluated exactly once, in proposal order; the rest are counted duplicates
    assert eval_spy.specs == [A, B, C]
    assert [r["key"] for r in rows] == [search.key(parse_spec(s)) for s in (A, B, C)]
    assert summary["stats"]["evaluated"] == 3 and summary["stats"]["duplicates"] >= 4
    assert [s for s, _ in sampler.observed] == [A, B, C]  # duplicates are not observed as new results
    # asking for a 4th candidate from an exhausted space stops (after 2000 duplicates in a row)
    assert any("exhausted" in m and "stopping at 3" in m for m in lines)
    assert store.run(search.run_id)["status"] == "done"


def test_no_key_is_evaluated_twice_in_a_tiny_space(tmp_path, search_ecfg, eval_spy):
    # stage 2 fixes X_Y: 4 trees per layer are left (16 specs); its seed (the stage-1 best) is
    # always a duplicate
    search, summary, rows = run_search(tmp_path / "runs.db", search_ecfg, stages="1,2", candidates=2,
                                       stage2_candidates=4, max_depth=3, max_size=4, unary=("gelu",), binary=())
    keys = eval_spy.keys(search)
    assert len(keys) == len(set(keys)) == len(rows) == 6
    assert [r["key"] for r in rows] == keys
    assert summary["stats"]["duplicates"] >= 1


# -- (c) reuse across runs ----------------------------------------------------------------------

def test_results_are_reused_across_runs_under_the_same_protocol(tmp_path, search_ecfg, monkeypatch):
    path = tmp_path / "runs.db"
    first, s1, rows1 = run_search(path, search_ecfg, candidates=3)
    assert s1["stats"]["evaluated"] == 3

    spy = EvalSpy(monkeypatch)
    second, s2, rows2 = run_search(path, search_ecfg, candidates=3)  # same seed: the same proposals
    assert second.run_id != first.run_id
    assert spy.specs == [] and s2["stats"]["reused"] == 3 and s2["stats"]["evaluated"] == 0
    assert key_score(rows2) == key_score(rows1)
    assert all(r["worker"] == "reused" and r["eval_hash"] == first.hash for r in rows2)

    third, s3, rows3 = run_search(path, search_ecfg, candidates=5)  # 3 known + 2 new
    assert s3["stats"]["reused"] == 3 and s3["stats"]["evaluated"] == 2
    new_keys = spy.keys(third)
    assert len(new_keys) == 2 and not set(new_keys) & {r["key"] for r in rows1}
    assert {r["key"] for r in rows3} == {r["key"] for r in rows1} | set(new_keys)

    # another protocol (fewer KD steps) never reuses
    spy.specs.clear()
    other = dataclasses.replace(search_ecfg, steps=4)
    fourth, s4, rows4 = run_search(path, other, candidates=3)
    assert fourth.hash != first.hash and s4["stats"]["reused"] == 0 and len(spy.specs) == 3
    assert [r["key"] for r in rows4][:2] == [r["key"] for r in rows1][:2]  # the same proposals, evaluated again


def test_reuse_across_runs_does_not_depend_on_the_stored_key_strings(tmp_path, search_ecfg, eval_spy):
    # an earlier run may have named a class after another member (met first, never stored)
    first, _, rows1 = run_search(tmp_path / "runs.db", search_ecfg, candidates=3)
    with first.store.db:
        first.store.db.execute("UPDATE candidates SET key = 'another-rep:' || key")
    eval_spy.specs.clear()
    second, s2, rows2 = run_search(tmp_path / "runs.db", search_ecfg, candidates=3)
    assert eval_spy.specs == [] and s2["stats"]["reused"] == 3 and s2["stats"]["evaluated"] == 0
    assert [r["score"] for r in rows2] == [r["score"] for r in rows1]


def test_eval_hash_ignores_where_and_how_fast_but_not_what():
    from exprsearch.kd.evaluate import EvalConfig
    base = EvalConfig(tasks=("SST-2",), layers=2)
    same = dataclasses.replace(base, device="cuda", cache_dir="/elsewhere", latency_batch=0, latency_len=7)
    assert eval_hash(same) == eval_hash(base)
    for change in (dict(steps=1), dict(lr=0.5), dict(tasks=("RTE",)), dict(seed=1), dict(layers=3)):
        assert eval_hash(dataclasses.replace(base, **change)) != eval_hash(base), change


# -- (d) budgets ---------------------------------------------------------------------------------

def _student_params(spec: str, teacher_dir: Path, num_labels: int = 2) -> int:
    tc = json.loads((teacher_dir / "config.json").read_text())
    cfg = StudentConfig(layers=2, hidden=tc["hidden_size"], heads=tc["num_attention_heads"], num_labels=num_labels,
                        vocab_size=tc["vocab_size"], max_position=tc["max_position_embeddings"],
                        type_vocab=tc["type_vocab_size"])
    return sum(p.numel() for p in build_student(spec, cfg).parameters())


SPECS = [STD2, "[linear4_1(gelu(linear4_1(x,wb1)),wb2); linear1_4(relu(linear1_4(x,wb1)),wb2)]",
         "[tanh(linear2_3(max(x,gelu(linear2_3(x,wb1))),wb2)); linear3_2(mul(x,linear3_2(x,wb1)),wb2)]"]


def test_price_agrees_with_the_built_student(tmp_path, search_ecfg, tiny_teacher):
    search = Search(Store(tmp_path / "runs.db"), scfg(), search_ecfg, log=quiet, progress=False)
    prices = [search.price(parse_spec(s)) for s in SPECS]
    assert [p for p, _ in prices] == [_student_params(s, tiny_teacher) for s in SPECS]
    assert len({p for p, _ in prices}) == 3 and all(f > 0 for _, f in prices)


def test_params_budget_skips_big_candidates(tmp_path, search_ecfg, eval_spy):
    probe = Search(Store(tmp_path / "probe.db"), scfg(), search_ecfg, log=quiet, progress=False)
    standard = probe.price(parse_spec(STD2))[0]
    budget = standard - 1  # the standard FFN is over budget: the search starts from its half-width form
    search, summary, rows = run_search(tmp_path / "runs.db", search_ecfg, candidates=3, budget_params=str(budget))
    assert eval_spy.specs[0] == "[linear1_2(gelu(linear1_2(x,wb1)),wb2); linear1_2(gelu(linear1_2(x,wb1)),wb2)]"
    assert len(rows) == 3 and STD2 not in eval_spy.specs
    for r in rows:
        assert r["params"] <= budget
        assert r["params"] == search.price(parse_spec(r["spec"], strict=False))[0]  # evaluated == priced


def test_parse_budget():
    assert parse_budget("10M") == 1e7 and parse_budget("500k") == 5e5 and parse_budget("2.5e6") == 2.5e6
    assert parse_budget("1G") == 1e9 and parse_budget(123) == 123.0
    assert parse_budget("") is None and parse_budget(None) is None
    with pytest.raises(ConfigError, match="10M"):
        parse_budget("ten")


def test_flops_budget_bounds_the_stored_flops(tmp_path, search_ecfg):
    probe = Search(Store(tmp_path / "probe.db"), scfg(), search_ecfg, log=quiet, progress=False)
    budget = probe.price(parse_spec(STD2))[1]  # the standard FFN is exactly on budget
    search, summary, rows = run_search(tmp_path / "runs.db", search_ecfg, candidates=2, budget_flops=str(budget))
    assert rows
    assert all(r["flops"] <= budget for r in rows), [(r["spec"], r["flops"], budget) for r in rows]


def test_price_of_a_regression_student(tmp_path, search_ecfg, tiny_teacher):
    ecfg = dataclasses.replace(search_ecfg, tasks=("STS-B",))
    search = Search(Store(tmp_path / "runs.db"), scfg(), ecfg, log=quiet, progress=False)
    assert search.price(parse_spec(STD2))[0] == _student_params(STD2, tiny_teacher, num_labels=1)


# -- (e) kill -9, then resume --------------------------------------------------------------------

CHILD = r'''
import json, os, sys, time
cfg = json.loads(sys.argv[1])
import torch
torch.set_num_threads(1)
from exprsearch.search import backends
from exprsearch.kd.evaluate import EvalConfig
from exprsearch.search.search import Search, SearchConfig
from exprsearch.search.store import Store

store = Store(cfg["store"])
ecfg = EvalConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["eval"].items()})
search = Search(store, SearchConfig(**cfg["search"]), ecfg, log=lambda m: None, progress=False)
orig = backends.InlineBackend.run

def run(self, batch, on_result=None):
    def commit(key, r):  # each result is committed as it arrives; stall once enough are stored
        on_result(key, r)
        with open(cfg["log"], "a") as f:
            f.write(json.dumps(key) + "\n")
        if store.count(search.run_id) >= cfg["stall_after"]:  # the next candidate is in flight: wait for the kill
            with open(cfg["marker"] + ".tmp", "w") as f:
                f.write(search.run_id)
            os.replace(cfg["marker"] + ".tmp", cfg["marker"])
            time.sleep(600)
    return orig(self, batch, on_result=commit)

backends.InlineBackend.run = run
search.run()
'''


def test_kill_9_then_resume_loses_nothing_and_repeats_nothing(tmp_path, search_ecfg, eval_spy):
    store_path, marker, log = tmp_path / "runs.db", tmp_path / "stalled", tmp_path / "child-evaluated.jsonl"
    search_cfg = scfg(candidates=6, population=16)
    (tmp_path / "child.py").write_text(CHILD)
    cfg = {"store": str(store_path), "eval": dataclasses.asdict(search_ecfg), "search": dataclasses.asdict(search_cfg),
           "stall_after": 2, "marker": str(marker), "log": str(log)}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    with open(tmp_path / "child.err", "w") as err:
        child = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), json.dumps(cfg)], cwd=ROOT, env=env,
                                 stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 180
            while not marker.exists():
                assert child.poll() is None, (tmp_path / "child.err").read_text()[-3000:]
                assert time.monotonic() < deadline, "the child never committed 2 candidates"
                time.sleep(0.05)
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=60) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    run_id = marker.read_text()

    store = Store(store_path)
    before = store.candidates(run_id)
    assert len(before) == 2 and store.run(run_id)["status"] == "running"
    child_keys = [json.loads(line) for line in log.read_text().splitlines()]
    assert child_keys == [r["key"] for r in before]  # what the child evaluated is exactly what it committed

    resumed = Search.resume(store, run_id, log=quiet, progress=False)
    assert resumed.scfg == search_cfg and resumed.ecfg == search_ecfg and resumed.hash == eval_hash(search_ecfg)
    summary = resumed.run()
    after = store.candidates(run_id)
    assert store.run(run_id)["status"] == "done"
    assert len(after) == 6 and len({r["key"] for r in after}) == 6 and [r["seq"] for r in after] == list(range(6))
    assert after[:2] == before  # rows stored before the kill are untouched
    resumed_keys = eval_spy.keys(resumed)
    assert len(resumed_keys) == 4 == summary["stats"]["evaluated"]
    assert not set(resumed_keys) & {r["key"] for r in before}  # nothing committed is evaluated again
    assert set(resumed_keys) | set(child_keys) == {r["key"] for r in after}

    # and the resumed run is the run an uninterrupted search with this seed makes
    _, _, straight = run_search(tmp_path / "straight.db", search_ecfg, candidates=6, population=16)
    assert key_score(after) == key_score(straight)


class _Crash(Exception):
    pass


def test_resumed_evolution_is_the_uninterrupted_search(tmp_path, search_ecfg, monkeypatch):
    _, _, straight = run_search(tmp_path / "straight.db", search_ecfg, candidates=6)
    store = Store(tmp_path / "runs.db")
    search = Search(store, scfg(candidates=6), search_ecfg, log=quiet, progress=False)
    orig, adds = Store.add, []

    def crashing_add(self, *a, **kw):  # the process dies right after the first generation's 4 commits
        if len(adds) == 4:
            raise _Crash
        adds.append(1)
        return orig(self, *a, **kw)

    monkeypatch.setattr(Store, "add", crashing_add)
    with pytest.raises(_Crash):
        search.run()
    monkeypatch.setattr(Store, "add", orig)
    assert store.count(search.run_id) == 4
    lines: list[str] = []
    Search.resume(store, search.run_id, log=lines.append, progress=True).run()
    assert [r["key"] for r in store.candidates(search.run_id)] == [r["key"] for r in straight]
    progress = [line for line in lines if line.startswith("[stage")]
    assert progress and not any("nan" in line or " 0/h" in line for line in progress), progress
    assert "rate and ETA after the first evaluation" in progress[0]  # the replayed generation
    assert "/h | stage ETA" in progress[-1]  # then a real rate


def test_resume_matches_stored_rows_by_spec_not_by_key_string(tmp_path, search_ecfg, eval_spy):
    # the process that stored a row may have named its equivalence class after another member (one it
    # met first but never stored): a resume must still find the row, not evaluate it again
    search, _, rows = run_search(tmp_path / "runs.db", search_ecfg, candidates=6)
    store = search.store
    with store.db:
        store.db.execute("UPDATE candidates SET key = 'another-rep:' || key WHERE run_id = ?", (search.run_id,))
    store.set_status(search.run_id, "running")
    eval_spy.specs.clear()
    resumed = Search.resume(store, search.run_id, log=quiet, progress=False)
    summary = resumed.run()
    assert eval_spy.specs == [] and summary["stats"]["evaluated"] == 0
    assert store.count(search.run_id) == 6
    assert [r["spec"] for r in store.candidates(search.run_id)] == [r["spec"] for r in rows]


def test_resume_during_stage3_ranking_ranks_every_assignment(tmp_path, search_ecfg, monkeypatch):
    kw = dict(stages="1,2,3", candidates=2, stage2_candidates=1, stage3_candidates=4, supernet_steps=2,
              multitask_steps=2)
    _, _, straight = run_search(tmp_path / "straight.db", search_ecfg, **kw)
    straight_proxies = [r["key"] for r in straight if r["key"].endswith("@proxy")]
    assert len(straight_proxies) >= 2
    store = Store(tmp_path / "runs.db")
    search = Search(store, scfg(**kw), search_ecfg, log=quiet, progress=False)
    orig = Store.add

    def crashing_add(self, run_id, result, **k):  # killed right after the first proxy row
        if result["key"].endswith("@proxy") and any(r["key"].endswith("@proxy") for r in self.candidates(run_id)):
            raise _Crash
        return orig(self, run_id, result, **k)

    monkeypatch.setattr(Store, "add", crashing_add)
    with pytest.raises(_Crash):
        search.run()
    monkeypatch.setattr(Store, "add", orig)
    Search.resume(store, search.run_id, log=quiet, progress=False).run()
    rows = store.candidates(search.run_id)
    assert [r["key"] for r in rows if r["key"].endswith("@proxy")] == straight_proxies


# -- stage 3 starts from the best candidate ------------------------------------------------------

def test_stage3_starts_from_the_best_of_stages_1_and_2(tmp_path, search_ecfg, monkeypatch):
    from exprsearch.kd.evaluate import Evaluator
    orig = Evaluator.evaluate_many

    def rigged(ev, specs, **kw):  # the standard FFN is clearly the best candidate
        results = orig(ev, specs, **kw)
        for spec, res in zip(specs, results):
            if res.status == "ok":
                res.score = 90.0 if str(spec) == STD2 else 50.0
        return results

    monkeypatch.setattr(Evaluator, "evaluate_many", rigged)
    search, _, rows = run_search(tmp_path / "runs.db", search_ecfg, stages="1,2,3", candidates=2,
                                 stage2_candidates=2, stage3_candidates=2, supernet_steps=2, multitask_steps=2)
    best = max((r for r in rows if r["stage"] in (1, 2)), key=lambda r: r["score"])
    assert best["spec"] == STD2
    first_proxy = next(r for r in rows if r["key"].endswith("@proxy"))  # the unchanged X_Y of the bodies
    assert first_proxy["key"] == best["key"] + "@proxy"


# -- (h) the command line -----------------------------------------------------------------------

def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def _search_argv(ecfg, store: Path, *extra: str) -> list[str]:
    return ["search", "--tasks", "SST-2", "--data-dir", ecfg.data_dir, "--teacher", ecfg.teacher, "--layers", "2",
            "--candidates", "3", "--stages", "1", "--steps", "5", "--warmup-steps", "5", "--max-train", "64",
            "--max-dev", "32", "--max-len", "32", "--batch-size", "16", "--lr", "1e-3", "--teacher-epochs", "0.5",
            "--latency-batch", "2", "--latency-len", "16", "--cache-dir", ecfg.cache_dir, "--device", "cpu",
            "--store", str(store), *extra]


def test_cli_search_show_export_resume(tmp_path, capsys, search_ecfg, eval_spy):
    store_path = tmp_path / "cli.db"
    rc, out, err = _cli(capsys, *_search_argv(search_ecfg, store_path, "--json"))
    assert rc == 0, err
    summary = json.loads(out)
    run_id = summary["run_id"]
    assert summary["stats"]["evaluated"] == 3 and len(eval_spy.specs) == 3
    assert [r["score"] for r in summary["leaderboard"]] == sorted((r["score"] for r in summary["leaderboard"]),
                                                                  reverse=True)
    assert summary["best"]["score"] == summary["leaderboard"][0]["score"]
    store = Store(store_path)
    assert store.run(run_id)["config"]["eval"]["steps"] == 5 and store.count(run_id) == 3
    assert eval_hash(search_ecfg) == store.candidates(run_id)[0]["eval_hash"]  # the CLI builds the same protocol

    rc, out, err = _cli(capsys, "show", "--store", str(store_path))
    assert rc == 0 and f"run {run_id} (done): 3 candidates" in out
    assert "leaderboard:" in out and "Pareto front:" in out
    assert f"{round(summary['best']['score'], 2)}" in out

    assert "not finished" not in out
    store.set_status(run_id, "running")  # as a killed search leaves it
    rc, out, err = _cli(capsys, "show", "--store", str(store_path))
    assert rc == 0 and f"exprsearch search --resume {run_id} --store {store_path}" in out
    store.set_status(run_id, "done")

    rc, out, err = _cli(capsys, "show", "list", "--store", str(store_path))
    assert rc == 0 and run_id in out and "done" in out

    csv_path = tmp_path / "run.csv"
    rc, out, err = _cli(capsys, "export", "--format", "csv", "--store", str(store_path), "-o", str(csv_path))
    assert rc == 0 and f"wrote {csv_path}" in err
    table = list(csv.reader(io.StringIO(csv_path.read_text())))
    assert table[0][:3] == ["run_id", "key", "spec"] and len(table) == 4
    assert [row[1] for row in table[1:]] == [r["key"] for r in store.candidates(run_id)]

    rc, out, err = _cli(capsys, "export", run_id, "--format", "json", "--store", str(store_path))
    assert rc == 0 and [c["key"] for c in json.loads(out)["candidates"]] == [row[1] for row in table[1:]]

    # resuming a finished run evaluates nothing and adds nothing
    eval_spy.specs.clear()
    rc, out, err = _cli(capsys, "search", "--resume", "last", "--store", str(store_path), "--json")
    assert rc == 0 and f"resuming run {run_id}: 3 candidates already stored" in err
    assert eval_spy.specs == [] and store.count(run_id) == 3 and json.loads(out)["run_id"] == run_id
    assert len(store.runs()) == 1

    rc, out, err = _cli(capsys, "show", "no-such-run", "--store", str(store_path))
    assert rc == 2 and "no run 'no-such-run'" in err and run_id in err

    # read-only commands refuse a store that is not there instead of creating an empty one
    typo = tmp_path / "typo.db"
    for argv in (["show", "list"], ["show"], ["export"], ["report", "-o", str(tmp_path / "r.html")],
                 ["search", "--resume", "last"]):
        rc, out, err = _cli(capsys, *argv, "--store", str(typo))
        assert rc == 2 and "no such store" in err and str(typo) in err, argv
        assert not typo.exists()


def test_cli_bad_sampler_exits_2_with_a_suggestion(tmp_path, capsys, search_ecfg, eval_spy):
    rc, out, err = _cli(capsys, *_search_argv(search_ecfg, tmp_path / "cli.db", "--sampler", "evolutoin"))
    assert rc == 2
    assert "unknown sampler 'evolutoin'" in err and "did you mean 'evolution'?" in err
    assert err.startswith("error:") or "\nerror:" in err
    assert eval_spy.specs == []


def test_cli_bad_sampler_leaves_no_run_behind(tmp_path, capsys, search_ecfg):
    store_path = tmp_path / "cli.db"
    Store(store_path).new_run({"note": "an earlier, real run"}, run_id="real-run")
    rc, _, _ = _cli(capsys, *_search_argv(search_ecfg, store_path, "--sampler", "evolutoin"))
    assert rc == 2
    store = Store(store_path)
    assert [r["run_id"] for r in store.runs()] == ["real-run"] and store.latest_run() == "real-run"


def test_a_run_stored_before_stage2_start_resumes_with_a_random_stage2(tmp_path, search_ecfg):
    store = Store(tmp_path / "runs.db")
    new = Search(store, scfg(stages="1,2"), search_ecfg, log=quiet, progress=False)
    assert new.scfg.stage2_start == "local"  # the default now: stage 2 refines stage 1's best
    config = store.run(new.run_id)["config"]
    del config["search"]["stage2_start"]  # as an older version stored it
    store.db.execute("UPDATE runs SET config = ? WHERE run_id = ?", (json.dumps(config), new.run_id))
    assert Search.resume(store, new.run_id, log=quiet, progress=False).scfg.stage2_start == "random"
    with pytest.raises(ConfigError, match="stage2_start"):
        scfg(stage2_start="greedy")


def test_stage2_evolution_grows_from_stage1s_best(tmp_path, search_ecfg):
    """Each stage-2 proposal keeps all but at most one layer of stage 1's best or of an earlier
    stage-2 candidate (mutation, crossover): a search around the best, not a random restart."""
    search, _, rows = run_search(tmp_path / "runs.db", search_ecfg, stages="1,2", candidates=6,
                                 stage2_candidates=5, population=4)
    best = parse_spec(max((r for r in rows if r["stage"] == 1), key=lambda r: r["score"])["spec"], strict=False)
    members = [best]
    stage2 = [parse_spec(r["spec"], strict=False) for r in rows if r["stage"] == 2]
    assert len(stage2) == 5
    for spec in stage2:
        new_layers = [i for i, e in enumerate(spec.layers) if all(e != m.layers[i] for m in members)]
        assert len(new_layers) <= 1, (str(spec), [str(m) for m in members])
        members.append(spec)


def test_a_stage_1_best_this_version_cannot_read_is_named(tmp_path, search_ecfg):
    # stage 2 starts from stage 1's best: a stored spec this version cannot read (a newer version's
    # operator, or damage) was a crash on None (found by mypy: row_spec returns None for it)
    import sqlite3

    from exprsearch.search.store import StoreError
    search, _, _ = run_search(tmp_path / "runs.db", search_ecfg, candidates=2)
    best = search.best(stage=1)
    assert best is not None
    with sqlite3.connect(tmp_path / "runs.db") as db:
        db.execute("UPDATE candidates SET spec = ? WHERE run_id = ? AND key = ?",
                   ("[linear1_2(newop(linear1_2(x,wb1)),wb2)]", search.run_id, best["key"]))
    with pytest.raises(StoreError, match="newop.*cannot be read by this version"):
        search.spaces(2)
