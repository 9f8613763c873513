"""Memory problems and systemic failures (issue 22), on the CPU through the fault hook.

* out of memory at a CUDA-graph capture or at a training step shrinks the group and retries its
  candidates: no failed row, and the scores equal those of a clean run (no poisoned state);
* a lone candidate that runs out of memory with graphs is retried without them;
* a bug or a device fault is never stored as a failed candidate: it stops the run, the run is
  marked failed with the reason, the CLI exits non-zero with one message, and ``--resume``
  finishes the run once the cause is gone, re-evaluating what the streak had failed;
* the sizing arithmetic keeps explicit sizes and says when they will not fit.
"""
from __future__ import annotations

import pytest
import torch
from conftest_search import (  # noqa: F401
    SEARCH_EVAL,
    easy_glue,
    eval_config,
    kd_cache,
    one_thread,
    quiet,
    run_search,
    scfg,
    search_ecfg,
    tiny_teacher,
)

from exprsearch.errors import DeviceError, RunAborted
from exprsearch.engine import faults
from exprsearch.kd.evaluate import Evaluator
from exprsearch.engine.sizing import GIB, Footprint, plan
from exprsearch.lang.parsing import parse_spec
from exprsearch.search.failures import STREAK
from exprsearch.search.search import Search
from exprsearch.search.store import Store

pytestmark = pytest.mark.usefixtures("one_thread")

SPECS = ["linear1_1(gelu(linear1_1(x,wb1)),wb2)", "linear1_2(relu(linear1_2(x,wb1)),wb2)",
         "linear1_2(gelu(linear1_2(x,wb1)),wb2)", "linear2_2(tanh(linear2_2(x,wb1)),wb2)"]


@pytest.fixture(autouse=True)
def no_faults():
    faults.clear()
    yield
    faults.clear()


@pytest.fixture(scope="module")
def ev(search_ecfg):
    return Evaluator(search_ecfg, log=quiet)


@pytest.fixture(scope="module")
def clean(ev):
    """Each spec's scores and curves from an evaluation with nothing injected (group 4)."""
    ev._group_size = 4
    return {r.spec: (r.score, r.curves) for r in ev.evaluate_many([parse_spec(s) for s in SPECS])}


def _run(ev, group: int, logs: list[str]):
    ev._group_size, ev.log = group, logs.append
    try:
        return ev.evaluate_many([parse_spec(s) for s in SPECS])
    finally:
        ev.log = quiet


@pytest.mark.parametrize("point", ["capture", "step"])
def test_out_of_memory_halves_the_group_and_loses_nothing(ev, clean, point):
    faults.inject(point, times=1, kind="oom")
    logs: list[str] = []
    res = _run(ev, 4, logs)
    assert [r.status for r in res] == ["ok"] * 4
    assert ev.group == 2  # and it stays halved
    assert any("out of memory training 4 candidates at once" in m and "groups of 2" in m for m in logs)
    # nothing poisoned: every score and learning curve is what the clean run gave
    assert {r.spec: (r.score, r.curves) for r in res} == clean


def test_a_lone_candidate_out_of_memory_with_graphs_is_retried_without(ev, clean):
    faults.inject("capture", times=1, kind="oom")
    logs: list[str] = []
    res = _run(ev, 1, logs)
    assert [r.status for r in res] == ["ok"] * 4
    assert any("retrying it without" in m for m in logs)
    assert {r.spec: (r.score, r.curves) for r in res} == clean


def test_a_lone_candidate_that_never_fits_fails_with_the_reason(ev):
    faults.inject("step", times=2, kind="oom")  # with graphs, then without
    res = _run(ev, 1, [])
    assert res[0].status == "failed" and res[0].reason == "SST-2: CUDA out of memory"
    assert [r.status for r in res[1:]] == ["ok"] * 3


def test_a_bug_in_training_is_raised_not_stored(ev):
    faults.inject("step", times=1, kind="bug")
    with pytest.raises(TypeError, match="injected fault at step"):
        _run(ev, 4, [])


def test_a_device_fault_stops_the_evaluation(ev):
    faults.inject("step", times=1, kind="device")
    with pytest.raises(DeviceError, match="illegal memory access"):
        _run(ev, 4, [])


# -- the search: loud failures, marked runs, resume ---------------------------------------------

def test_a_device_fault_fails_the_run_and_resume_finishes_it(tmp_path, search_ecfg):
    store = Store(tmp_path / "runs.db")
    search = Search(store, scfg(candidates=6, batch=2), search_ecfg, log=quiet, progress=False)
    calls = {"n": 0}
    orig = Evaluator.evaluate_many

    def third_batch_breaks(self, specs, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            faults.inject("step", times=1, kind="device")
        return orig(self, specs, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Evaluator, "evaluate_many", third_batch_breaks)
        with pytest.raises(DeviceError):
            search.run()
    run = store.run(search.run_id)
    assert run["status"] == "failed" and "illegal memory access" in run["notes"]
    assert store.count(search.run_id) == 4 and not store.candidates(search.run_id, status="failed")
    again = Search.resume(store, search.run_id, log=quiet, progress=False)
    again.run()
    assert store.run(search.run_id)["status"] == "done"
    assert again.stats["evaluated"] == 2 and store.count(search.run_id) == 6


def test_the_same_error_in_a_row_stops_the_run_and_resume_evaluates_them_again(tmp_path, search_ecfg):
    store = Store(tmp_path / "runs.db")
    search = Search(store, scfg(candidates=STREAK + 4, batch=2), search_ecfg, log=quiet, progress=False)
    orig = Evaluator._student

    def broken_library(self, st, spec):  # a systemic failure that looks like each candidate's own
        raise RuntimeError("cuDNN error: CUDNN_STATUS_NOT_INITIALIZED (handle 0x7f3a)")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Evaluator, "_student", broken_library)
        with pytest.raises(RunAborted) as err:
            search.run()
    text = str(err.value)
    assert f"{STREAK} candidates in a row failed with the same error" in text
    assert f"--resume {search.run_id}" in text and "not the candidates'" in text
    assert store.count(search.run_id) == 0  # the streak's rows are not kept
    assert store.run(search.run_id)["status"] == "failed"
    assert Evaluator._student is orig
    again = Search.resume(store, search.run_id, log=quiet, progress=False)
    again.run()
    assert store.count(search.run_id) == STREAK + 4
    assert not store.candidates(search.run_id, status="failed")


def test_every_candidate_of_a_stage_failing_stops_the_run(tmp_path, search_ecfg, monkeypatch):
    store = Store(tmp_path / "runs.db")
    search = Search(store, scfg(candidates=3, batch=3), search_ecfg, log=quiet, progress=False)
    n = {"k": 0}

    def all_different(self, st, spec):  # errors that differ: no streak, but nothing works
        n["k"] += 1
        raise RuntimeError(f"candidate-specific failure {'abc'[n['k'] % 3]}")

    monkeypatch.setattr(Evaluator, "_student", all_different)
    with pytest.raises(RunAborted, match="every candidate of stage 1 failed"):
        search.run()


def test_cli_exits_non_zero_and_show_list_marks_the_run_failed(tmp_path, search_ecfg, capsys):
    from exprsearch.cli.main import main
    cfg = search_ecfg
    store = tmp_path / "runs.db"
    args = ["search", "--store", str(store), "--tasks", "SST-2", "--stages", "1", "--candidates", "2",
            "--data-dir", cfg.data_dir, "--teacher", cfg.teacher, "--cache-dir", cfg.cache_dir, "--device", "cpu",
            "--layers", "2", "--max-len", "32", "--batch-size", "16", "--max-train", "64", "--max-dev", "32",
            "--steps", "5", "--warmup-steps", "5", "--teacher-epochs", "0.5", "--lr", "1e-3", "--population", "2",
            "--tournament", "2", "--latency-batch", "2", "--latency-len", "16"]
    faults.inject("step", times=1, kind="device")
    assert main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err and "illegal memory access" in errors[0]
    assert main(["show", "list", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "DeviceError" in out
    assert main(["search", "--store", str(store), "--resume", "last"]) == 0
    assert "done" in (capsys.readouterr(), main(["show", "list", "--store", str(store)]), capsys.readouterr().out)[2]


# -- sizing -------------------------------------------------------------------------------------

FP = Footprint(process=int(1.5 * GIB), base=int(1 * GIB), per_member=int(2.2 * GIB), graphs=True)


@pytest.mark.parametrize("gib, workers, group", [(141, 2, 16), (80, 2, 10), (40, 1, 10), (24, 1, 6)])
def test_the_plan_fits_the_card(gib, workers, group):
    p = plan(int(gib * GIB), FP)
    assert (p.workers, p.group) == (workers, group)
    assert p.need <= p.free and not p.notes


def test_explicit_sizes_win_with_a_warning_when_they_do_not_fit():
    p = plan(int(24 * GIB), FP, group=16, workers=2)
    assert (p.workers, p.group) == (2, 16)
    assert "need about" in p.notes[0] and "--group" in p.notes[0]
    assert plan(int(24 * GIB), FP, group=4).workers == 1  # one given: the other is sized around it
    assert plan(int(141 * GIB), FP, workers=1).group == 16
    tiny = plan(int(2 * GIB), FP)
    assert (tiny.group, tiny.workers) == (1, 1) and "expect out-of-memory" in tiny.notes[0]


def test_the_cpu_plan_is_the_default_group(search_ecfg):
    import dataclasses
    e = Evaluator(dataclasses.replace(search_ecfg, group=0), log=quiet)
    assert e.group == 8 and e.size(workers=0).workers == 1
    assert torch.device("cpu") == e.device


def test_a_lost_graph_pool_replaces_the_workers_with_smaller_groups(tmp_path, search_ecfg, monkeypatch, local_specs):
    """A capture that ran out of memory on CUDA leaves its pool allocated: the pool backend replaces
    its workers and halves the group (at 1, no graphs); nothing fails, scores are unchanged."""
    from exprsearch.search.backends import InlineBackend, PoolBackend
    monkeypatch.setenv("EXPRSEARCH_FAULTS", "capture:1:lost")  # every fresh worker: once, at its first capture
    logs: list[str] = []
    backend = PoolBackend(search_ecfg, workers=1, log=logs.append)
    try:
        out = backend.run(local_specs)
    finally:
        backend.close()
    assert all(r["status"] == "ok" for r in out.values()) and len(out) == len(local_specs)
    assert any("groups of 1 from now on" in m for m in logs) and any("without CUDA graphs" in m for m in logs)
    want = InlineBackend(search_ecfg, log=quiet).run(local_specs)
    assert {k: r["score"] for k, r in out.items()} == pytest.approx({k: r["score"] for k, r in want.items()})


@pytest.fixture
def local_specs():
    return [(s, parse_spec(s)) for s in SPECS[:3]]
