"""Clean files (issue 31, item 8): read-only commands leave no -wal/-shm beside a store; a new store
that a full disk stops leaves nothing and names the disk; damaged values read as damaged rows;
a killed distill's leftovers are removed by the next one; a full disk while writing a student is
one message."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from _support import STANDARD_FFN

from exprsearch.cli.main import main
from exprsearch.errors import ConfigError
from exprsearch.search.store import Store, StoreError
from exprsearch.ship.outdir import no_space, reserve

SPEC = f"[{STANDARD_FFN}]"


def make_store(path: Path, **config) -> str:
    st = Store(path)
    run = st.new_run(config or {"search": {"candidates": 2}, "eval": {"tasks": ["RTE"]}})
    for i, score in enumerate((61.5, 60.0, 59.0)):
        spec = f"[linear1_{i + 1}(gelu(linear1_{i + 1}(x,wb1)),wb2)]"
        st.add(run, {"key": spec, "spec": spec, "status": "ok", "score": score, "params": 10,
                     "metrics": {"RTE": {"acc": score / 100}}}, eval_hash="h")
    st.set_status(run, "done")
    st.close()
    return run


@pytest.mark.parametrize("argv", [["show"], ["show", "list"], ["export"], ["export", "--format", "json"],
                                  ["report", "-o", "{tmp}/r.html"]])
def test_read_only_commands_leave_no_wal_or_shm(capsys, tmp_path, argv):
    db = tmp_path / "runs.db"
    make_store(db)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([a.format(tmp=tmp_path) for a in argv] + ["--store", str(db)]) == 0
    capsys.readouterr()
    after = sorted(p.name for p in tmp_path.iterdir() if p.name != "r.html")
    assert after == before == ["runs.db"]


def test_a_reader_still_sees_what_a_running_writer_committed(capsys, tmp_path):
    db = tmp_path / "runs.db"
    make_store(db)
    writer = Store(db)  # a search still running: its log holds a commit not yet in the file
    run = writer.new_run({"search": {}, "eval": {}})
    writer.add(run, {"key": SPEC, "spec": SPEC, "status": "ok", "score": 70.0, "params": 1}, eval_hash="h")
    assert Path(f"{db}-wal").exists()
    assert Store(db, readonly=True).candidates(run)[0]["score"] == 70.0
    writer.close()


class _FullDisk:
    """A connection whose schema write fails as on a full disk (after SQLite made its files)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def executescript(self, sql: str):
        raise sqlite3.OperationalError("database or disk is full")

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def __setattr__(self, name, value):
        if name == "_conn":
            object.__setattr__(self, name, value)
        else:
            setattr(self._conn, name, value)


def test_a_new_store_a_full_disk_stops_leaves_nothing_and_names_the_disk(tmp_path, monkeypatch):
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: _FullDisk(real(*a, **k)))
    with pytest.raises(StoreError) as err:
        Store(tmp_path / "new.db")
    assert "cannot create the store" in str(err.value) and "disk is full" in str(err.value)
    assert "not a usable exprsearch store" not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # no 4 kB store, no -wal, no -shm


def test_an_existing_store_is_never_removed_on_an_error(tmp_path, monkeypatch):
    db = tmp_path / "runs.db"
    make_store(db)
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: _FullDisk(real(*a, **k)))
    with pytest.raises(StoreError, match="disk is full"):
        Store(db)
    assert db.is_file()


def damage(db: Path) -> str:
    run = make_store(db, search={"candidates": 2, "stages": 5}, eval={"tasks": ["RTE"]})
    con = sqlite3.connect(db)
    con.execute("UPDATE candidates SET score = 'high', params = 'many', flops = 'x' WHERE key LIKE '%linear1_2%'")
    con.execute("""UPDATE candidates SET metrics = '{"RTE": {"acc": NaN, "f1": "bad"}}', stage = 'two'
                   WHERE key LIKE '%linear1_3%'""")
    con.commit()
    con.close()
    return run


@pytest.mark.parametrize("argv", [["show"], ["show", "list"], ["export"], ["export", "--format", "json"],
                                  ["report", "-o", "{tmp}/r.html"]])
def test_wrong_typed_values_read_as_damaged_rows(capsys, tmp_path, argv):
    db = tmp_path / "runs.db"
    damage(db)
    assert main([a.format(tmp=tmp_path) for a in argv] + ["--store", str(db)]) == 0
    out, err = capsys.readouterr()
    assert "internal error" not in err and "Traceback" not in err


def test_damaged_rows_are_failed_rows_and_a_damaged_config_is_no_crash(capsys, tmp_path):
    db = tmp_path / "runs.db"
    run = damage(db)
    rows = {r["key"]: r for r in Store(db, readonly=True).candidates(run)}
    ok, text, nan = (rows[f"[linear1_{i}(gelu(linear1_{i}(x,wb1)),wb2)]"] for i in (1, 2, 3))
    assert ok["status"] == "ok" and "damaged" not in ok
    assert (text["status"], text["score"], text["params"]) == ("failed", None, None)
    assert "damaged in the store: score" in text["reason"]
    assert nan["status"] == "failed" and nan["metrics"] == {"RTE": {}} and nan["stage"] is None
    assert main(["search", "--resume", run, "--store", str(db)]) == 2
    assert "its stored config is damaged (SearchConfig.stages is 5)" in capsys.readouterr().err


def test_distill_picks_the_best_undamaged_row(tmp_path, monkeypatch):
    from exprsearch.cli.common import run_best
    db = tmp_path / "runs.db"
    run = damage(db)
    best, found = run_best(Store(db, readonly=True), run, "distil")
    assert found == run and best["score"] == 61.5


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_distills_leftovers_are_removed_and_a_live_one_is_respected(tmp_path):
    out = tmp_path / "student"
    dead = _dead_pid()
    tmp = tmp_path / f".student.tmp-{dead}"
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"0" * 1024)
    (tmp_path / f".student.old-{dead}").mkdir()
    (tmp_path / ".student.lock").write_text(str(dead))
    mine = tmp_path / f".other.tmp-{dead}"  # another target's: left alone
    mine.mkdir()
    with reserve(out, ["SST-2"], overwrite=False):
        assert sorted(p.name for p in tmp_path.iterdir()) == [f".other.tmp-{dead}", ".student.lock"]
        assert (tmp_path / ".student.lock").read_text() == str(os.getpid())
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".other.tmp-{dead}"]
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".student.lock").write_text(str(live.pid))
        with pytest.raises(ConfigError, match=f"another exprsearch distill \\(process {live.pid}\\)"):
            reserve(out, ["SST-2"], overwrite=False)
    finally:
        live.kill()
        live.wait()


def test_reserve_refuses_too_little_space_and_an_unwritable_folder(tmp_path):
    with pytest.raises(ConfigError, match="MB free, and the student need about"):
        reserve(tmp_path / "student", ["SST-2"], overwrite=False, need_bytes=1 << 62)
    assert list(tmp_path.iterdir()) == []
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="cannot"):
            reserve(ro / "student", ["SST-2"], overwrite=False)


def test_a_full_disk_while_writing_the_student_is_one_message(capsys, tmp_path, monkeypatch):
    import exprsearch.kd.evaluate as evaluate
    import exprsearch.ship.distill as distill_mod

    class SafetensorError(Exception):
        pass

    def full(*a, **k):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                              "message: \"No space left on device\" })")

    monkeypatch.setattr(evaluate.Evaluator, "__init__", lambda self, cfg, log=None: None)
    monkeypatch.setattr(distill_mod, "distill", full)
    assert no_space(RuntimeError("x").with_traceback(None)) is False
    out = tmp_path / "student"
    assert main(["distill", STANDARD_FFN, "--task", "SST-2", "-o", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "no space left on the device of" in err and "internal error" not in err
    assert list(tmp_path.iterdir()) == []  # the reservation is released


def test_a_best_row_with_damaged_sizes_is_reported_and_a_directory_is_no_report_file(capsys, tmp_path):
    db = tmp_path / "runs.db"
    make_store(db)
    con = sqlite3.connect(db)
    con.execute("UPDATE candidates SET params = 'many', flops = 'x', latency_ms = 'y', ffn_params = 'z'")
    con.commit()
    con.close()
    for argv in (["show"], ["report", "-o", str(tmp_path / "r.html")]):
        assert main([*argv, "--store", str(db)]) == 0
    assert "score 61.50, - params" in (tmp_path / "r.html").read_text()
    assert main(["report", "-o", str(tmp_path), "--store", str(db)]) == 2
    assert "is a directory" in capsys.readouterr().err
