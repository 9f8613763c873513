"""Issue 32: CPU thread counts that survive a busy machine (exprsearch/engine/threads.py)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from exprsearch.engine.threads import ENV_VARS, pick


@pytest.mark.parametrize("cores", [1, 2, 4, 16])
@pytest.mark.parametrize("workers", [1, 2, 3, 8])
@pytest.mark.parametrize("busy", [0.0, 0.6, 1.0, 2.0, 15.0])
def test_workers_times_threads_never_exceed_the_free_cores(cores, workers, busy):
    t = pick(workers=workers, cores=cores, busy=busy, env={})
    assert t.count >= 1
    assert workers * t.count <= max(workers, cores - busy + 0.5)
    pinned = pick(requested=cores, workers=workers, cores=cores, busy=busy, env={})
    assert workers * pinned.count <= max(workers, cores)


@pytest.mark.parametrize("var", ENV_VARS)
def test_the_usual_environment_variables_win(var):
    t = pick(requested=4, workers=1, cores=8, busy=0.0, env={var: "3"})
    assert t.count == 3 and var in t.why
    assert pick(requested=4, cores=8, busy=0.0, env={var: "abc"}).count == 4  # not a count: ignored


def test_a_busy_core_is_left_alone_and_an_idle_machine_is_used_whole():
    assert pick(cores=2, busy=0.0, env={}).count == 2
    assert pick(cores=2, busy=0.9, env={}).count == 1
    assert pick(cores=2, busy=1.8, env={}).count == 1


def test_threads_is_a_checked_execution_setting():
    from exprsearch.kd.protocol import EvalConfig
    from exprsearch.errors import ConfigError
    with pytest.raises(ConfigError, match="threads"):
        EvalConfig(threads=-1)
    from exprsearch.search.search import eval_hash
    assert eval_hash(EvalConfig(threads=1)) == eval_hash(EvalConfig(threads=2))  # execution, not protocol


@pytest.mark.parametrize("niced, busy", [(False, 1.0), (True, 2.0)])
def test_a_niced_neighbour_leaves_its_cores_unless_we_are_niced_too(monkeypatch, niced, busy):
    """/proc/stat over the window: 2 cores, one busy at nice 0 and one in a niced process (our own
    process idle): a nice-0 process sees one busy core, a niced one both (issue 32)."""
    from exprsearch.engine import threads
    samples = iter([(1000.0, 4000.0, 300.0), (1000.0 + 200.0, 4000.0 + 200.0, 300.0 + 100.0)])  # (busy, total, niced)
    monkeypatch.setattr(threads, "_jiffies", lambda: next(samples))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    clock = iter([0.0, 1.0])
    monkeypatch.setattr(threads, "time", SimpleNamespace(sleep=lambda s: None, process_time=lambda: 0.0,
                                                         monotonic=lambda: next(clock)))  # our process: idle
    assert threads.busy_elsewhere(niced=niced) == pytest.approx(busy, abs=0.05)
