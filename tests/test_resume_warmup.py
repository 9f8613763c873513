"""A stopped search goes on where it stopped (issue 33 item 6): a resumed run finds the warm
supernet its first process cached (the same cache file: no second warm-up); a warm-up stopped
half-way continues from its last checkpoint and ends with the weights an uninterrupted one has;
SIGTERM marks the run interrupted like Ctrl-C; a run whose process died reads 'died' in show."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from conftest_kd import Recorder, easy_glue, eval_config, one_thread, quiet, tiny_teacher  # noqa: F401
from conftest_search import SEARCH_EVAL, scfg

import exprsearch.engine.checkpoint as checkpoint
from exprsearch.cli import main as cli
from exprsearch.kd.distill import SupernetStudent
from exprsearch.rows.glue import task
from exprsearch.kd.prepare import locations, prepare
from exprsearch.search.search import Search, eval_hash
from exprsearch.search.store import Store

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(glue, teacher, cache, **kw):
    return eval_config(glue, teacher, cache, **{**SEARCH_EVAL, "warmup_sampling": "space", **kw})


def test_a_resumed_search_does_not_warm_up_again(tmp_path, easy_glue, tiny_teacher, monkeypatch):  # noqa: F811
    from exprsearch.kd.evaluate import Evaluator
    cfg = _cfg(easy_glue, tiny_teacher, tmp_path / "cache")
    store = Store(tmp_path / "runs.db")
    calls = []
    orig = Evaluator.evaluate_many

    def stop_second(ev, specs, **kw):  # the process is stopped after its first group
        calls.append(len(specs))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return orig(ev, specs, **kw)

    monkeypatch.setattr(Evaluator, "evaluate_many", stop_second)
    first_log = Recorder()
    search = Search(store, scfg(candidates=6, batch=2), cfg, log=first_log, progress=False)
    with pytest.raises(KeyboardInterrupt):
        search.run()
    assert store.run(search.run_id)["status"] == "interrupted"
    assert any("warming up the supernet" in m for m in first_log.lines)
    cached = sorted((tmp_path / "cache" / "supernets").glob("*.pt"))
    monkeypatch.setattr(Evaluator, "evaluate_many", orig)
    log = Recorder()
    resumed = Search.resume(store, search.run_id, log=log, progress=False)
    assert resumed.ecfg == search.ecfg and eval_hash(resumed.ecfg) == eval_hash(search.ecfg)
    resumed.run()
    assert store.run(search.run_id)["status"] == "done" and store.count(search.run_id) == 6
    assert not any("warming up" in m for m in log.lines), log.lines  # the cached supernet, not a second warm-up
    assert sorted((tmp_path / "cache" / "supernets").glob("*.pt")) == cached and len(cached) == 1


def _warm(cfg, log=quiet):
    data, teacher, cache = locations(cfg)
    st = prepare(cfg, task("SST-2"), torch.device("cpu"), data, teacher, cache, log)
    return {k: v.clone() for k, v in st.supernet.state_dict().items()}


def test_a_warm_up_stopped_half_way_goes_on_from_its_checkpoint(tmp_path, easy_glue, tiny_teacher,  # noqa: F811
                                                               monkeypatch):
    cfg = _cfg(easy_glue, tiny_teacher, tmp_path / "cache", warmup_steps=20)  # log points every 2 steps
    straight = _warm(cfg)
    for f in (tmp_path / "cache" / "supernets").glob("*"):
        f.unlink()  # the teacher stays cached; the warm-up is done again
    monkeypatch.setattr(checkpoint, "EVERY_S", 0.0)
    save = checkpoint.Checkpoint.save

    def killed_after_step_10(self, trainer, step):
        save(self, trainer, step)
        if step == 10:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.Checkpoint, "save", killed_after_step_10)
    with pytest.raises(KeyboardInterrupt):
        _warm(cfg)
    partial = list((tmp_path / "cache" / "supernets").glob("*.partial.pt"))
    assert len(partial) == 1 and not [f for f in partial[0].parent.glob("*.pt") if f not in partial]
    monkeypatch.setattr(checkpoint.Checkpoint, "save", save)
    draws = []
    sample = SupernetStudent.sample
    monkeypatch.setattr(SupernetStudent, "sample", lambda self, *a, **kw: draws.append(1) or sample(self, *a, **kw))
    log = Recorder()
    again = _warm(cfg, log)
    assert len(draws) == 10  # steps 11-20 only
    assert any("continuing from the checkpoint of step 10" in m for m in log.lines)
    assert again.keys() == straight.keys() and all(torch.equal(again[k], straight[k]) for k in straight)
    assert not list((tmp_path / "cache" / "supernets").glob("*.partial.pt"))  # done: the checkpoint is gone


def test_sigterm_marks_the_run_interrupted(tmp_path, easy_glue, tiny_teacher, monkeypatch):  # noqa: F811
    from exprsearch.kd.evaluate import Evaluator
    cfg = _cfg(easy_glue, tiny_teacher, tmp_path / "cache", warmup_steps=0)
    store = Store(tmp_path / "runs.db")
    monkeypatch.setattr(Evaluator, "evaluate_many", lambda ev, specs, **kw: os.kill(os.getpid(), signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    search = Search(store, scfg(candidates=2), cfg, log=quiet, progress=False)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        search.run()
    run = store.run(search.run_id)
    assert (run["status"], run["notes"]) == ("interrupted", "stopped by SIGTERM")
    assert signal.getsignal(signal.SIGTERM) is before  # the handler goes with the run


DIES = r'''
import os, sys
from exprsearch.search.liveness import owner
from exprsearch.search.store import Store
store = Store(sys.argv[1])
run = store.new_run({"search": {}, "eval": {}})
store.set_status(run, "running", owner())
print(run, flush=True)
os.kill(os.getpid(), 9)
'''


def test_a_run_whose_process_died_reads_died(tmp_path, capsys):
    db = tmp_path / "runs.db"
    proc = subprocess.run([sys.executable, "-c", DIES, str(db)], capture_output=True, text=True, timeout=300,
                          cwd=os.getcwd())
    assert proc.returncode == -9, proc.stderr[-2000:]
    run = proc.stdout.split()[0]
    live = Store(db).new_run({"search": {}, "eval": {}})
    from exprsearch.search.liveness import owner
    Store(db).set_status(live, "running", owner())  # this process: alive
    assert cli.main(["show", "list", "--store", str(db)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in (run, live)}
    assert "died" in lines[run] and "ended without a clean stop" in lines[run]
    assert "running" in lines[live] and "died" not in lines[live]
    assert cli.main(["show", run, "--store", str(db)]) == 0
    assert f"run {run} (died)" in capsys.readouterr().out
