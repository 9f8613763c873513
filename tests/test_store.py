"""The SQLite store of search runs: runs, candidates, dedup lookup, export, errors, concurrency."""
from __future__ import annotations

import csv
import io
import json
import multiprocessing as mp
import sqlite3

import pytest

from exprsearch.search.store import COLUMNS, Store, StoreError


def _result(key: str, score: float | None = 60.0, status: str = "ok", **kw) -> dict:
    return {"key": key, "spec": key, "status": status, "score": score, "params": 1000,
            "metrics": {"SST-2": {"acc": (score or 0) / 100}}, **kw}


@pytest.fixture
def store(tmp_path):
    st = Store(tmp_path / "runs.db")
    yield st
    st.close()


# -- runs ----------------------------------------------------------------------------------------

def test_new_run_run_runs_latest(store):
    a = store.new_run({"sampler": "random", "candidates": 3})
    b = store.new_run({"sampler": "lanas"}, run_id="my-run")
    assert b == "my-run" and a != b
    info = store.run(a)
    assert info["run_id"] == a and info["status"] == "running"
    assert info["config"] == {"sampler": "random", "candidates": 3}  # JSON round trip
    assert store.latest_run() == "my-run"
    store.add(a, _result("[k1]", 50.0))
    store.add(a, _result("[k2]", 70.0))
    runs = {r["run_id"]: r for r in store.runs()}
    assert [r["run_id"] for r in store.runs()] == [a, "my-run"]  # oldest first
    assert runs[a]["candidates"] == 2 and runs[a]["best"] == 70.0
    assert runs["my-run"]["candidates"] == 0 and runs["my-run"]["best"] is None
    store.set_status(a, "done")
    assert store.run(a)["status"] == "done" and store.run("my-run")["status"] == "running"


def test_latest_run_of_an_empty_store_is_a_store_error(store):
    with pytest.raises(StoreError, match="no runs"):
        store.latest_run()


def test_unknown_run_id_lists_recent_runs(store):
    ids = [store.new_run({}, run_id=f"run-{i}") for i in range(3)]
    with pytest.raises(StoreError) as err:
        store.run("run-9")
    msg = str(err.value)
    assert "'run-9'" in msg and "recent runs" in msg
    assert all(i in msg for i in ids)


def test_unknown_run_id_in_an_empty_store(store):
    with pytest.raises(StoreError, match="no run 'nope'") as err:
        store.run("nope")
    assert "recent runs" not in str(err.value)


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_bytes(b"this is not a database, just some text\n" * 100)
    with pytest.raises(StoreError, match="not a usable exprsearch store"):
        Store(bad)
    assert bad.read_bytes().startswith(b"this is not a database")  # left untouched


# -- candidates ----------------------------------------------------------------------------------

def test_add_a_duplicate_key_returns_false_and_keeps_the_first(store):
    run = store.new_run({})
    assert store.add(run, _result("[a]", 61.5), eval_hash="h", stage=1, worker="w1") is True
    assert store.add(run, _result("[a]", 99.0), eval_hash="h", stage=2, worker="w2") is False
    rows = store.candidates(run)
    assert len(rows) == 1 and store.count(run) == 1
    assert rows[0]["score"] == 61.5 and rows[0]["stage"] == 1 and rows[0]["worker"] == "w1"
    assert store.has(run, "[a]") and not store.has(run, "[b]")
    # the same key in another run is a separate row
    other = store.new_run({})
    assert store.add(other, _result("[a]", 10.0), eval_hash="h") is True
    assert store.candidates(run)[0]["score"] == 61.5


def test_rows_round_trip_every_column(store):
    run = store.new_run({})
    store.add(run, {**_result("[k]", 55.0), "reason": "why", "flops_per_token": 123.5, "latency_ms": 2.5,
                    "seconds": 1.25, "curves": {"SST-2": {"loss": [[1, 0.5]]}}, "ffn_params": 300,
                    "latency": {"ms": 2.5, "spread_ms": 0.1, "rel": 0.9, "rel_spread": 0.02}},
              eval_hash="hh", stage=2, config={"eval": "hh"}, worker="inline")
    (r,) = store.candidates(run)
    assert set(r) == set(COLUMNS) | {"ffn_params", "latency"} and r["ffn_params"] == 300
    assert r["latency"] == {"ms": 2.5, "spread_ms": 0.1, "rel": 0.9, "rel_spread": 0.02}
    assert (r["run_id"], r["key"], r["spec"], r["stage"], r["status"], r["reason"]) == (run, "[k]", "[k]", 2, "ok", "why")
    assert (r["score"], r["params"], r["flops"], r["latency_ms"], r["seconds"]) == (55.0, 1000, 123.5, 2.5, 1.25)
    assert r["metrics"] == {"SST-2": {"acc": 0.55}} and r["curves"] == {"SST-2": {"loss": [[1, 0.5]]}}
    assert r["config"] == {"eval": "hh"} and r["eval_hash"] == "hh" and r["worker"] == "inline"
    assert r["seq"] == 0


def test_candidates_are_ordered_by_seq_and_filtered_by_status(store):
    run = store.new_run({})
    keys = ["[z]", "[a]", "[m]", "[b]", "[y]"]
    for i, k in enumerate(keys):
        store.add(run, _result(k, float(i), status="failed" if i == 2 else "ok"))
    rows = store.candidates(run)
    assert [r["key"] for r in rows] == keys  # arrival order, not key order
    assert [r["seq"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["key"] for r in store.candidates(run, status="ok")] == ["[z]", "[a]", "[b]", "[y]"]
    assert [r["key"] for r in store.candidates(run, status="failed")] == ["[m]"]
    # seq counts per run: another run starts at 0 again
    other = store.new_run({})
    store.add(other, _result("[q]"))
    assert store.candidates(other)[0]["seq"] == 0


def test_lookup_across_runs_by_key_and_eval_hash_ignores_failed_rows(store):
    r1, r2, r3 = store.new_run({}), store.new_run({}), store.new_run({})
    store.add(r1, _result("[f]", None, status="failed", reason="nan"), eval_hash="h1")
    store.add(r1, _result("[ok]", 61.0), eval_hash="h1")
    store.add(r2, _result("[ok]", 75.0), eval_hash="h2")  # same key, other protocol
    store.add(r3, _result("[ok]", 99.0), eval_hash="h1")  # later run, same protocol
    assert store.lookup("[f]", "h1") is None  # failures are re-tried, not reused
    hit = store.lookup("[ok]", "h1")
    assert hit is not None and hit["run_id"] == r1 and hit["score"] == 61.0  # the first result
    assert hit["metrics"] == {"SST-2": {"acc": 0.61}}  # decoded JSON
    assert store.lookup("[ok]", "h2")["score"] == 75.0
    assert store.lookup("[ok]", "h3") is None and store.lookup("[none]", "h1") is None
    # a later successful evaluation of the failed key is found
    store.add(r2, _result("[f]", 40.0), eval_hash="h1")
    assert store.lookup("[f]", "h1")["score"] == 40.0


def test_iterating_the_store_yields_every_row_of_every_run(store):
    r1, r2 = store.new_run({}), store.new_run({})
    store.add(r1, _result("[a]"))
    store.add(r2, _result("[b]"))
    store.add(r1, _result("[c]"))
    assert [(r["run_id"], r["key"]) for r in store] == [(r1, "[a]"), (r2, "[b]"), (r1, "[c]")]


def test_a_second_store_object_sees_committed_rows(tmp_path):
    a = Store(tmp_path / "s.db")
    run = a.new_run({"x": 1})
    a.add(run, _result("[k]", 42.0))
    b = Store(tmp_path / "s.db")
    assert b.latest_run() == run and b.candidates(run)[0]["score"] == 42.0
    a.close()
    b.close()


# -- export --------------------------------------------------------------------------------------

def _filled(store) -> str:
    run = store.new_run({"sampler": "evolution"})
    store.add(run, _result("[linear1_1(gelu(linear1_1(x,wb1)),wb2)]", 60.0), eval_hash="h", stage=1)
    store.add(run, _result("[b, with comma]", None, status="failed", reason='bad "quote"'), eval_hash="h", stage=2)
    return run


def test_export_csv_parses_as_header_and_rows(store):
    run = _filled(store)
    rows = list(csv.reader(io.StringIO(store.export(run, "csv"))))
    header, body = rows[0], rows[1:]
    assert header == [c for c in COLUMNS if c not in ("curves", "config")] + ["seeds", "seed_std"]
    assert len(body) == 2 and all(len(r) == len(header) for r in body)
    d = [dict(zip(header, r)) for r in body]
    assert d[0]["key"] == "[linear1_1(gelu(linear1_1(x,wb1)),wb2)]" and float(d[0]["score"]) == 60.0
    assert d[0]["stage"] == "1" and d[0]["seq"] == "0" and d[0]["run_id"] == run
    assert json.loads(d[0]["metrics"]) == {"SST-2": {"acc": 0.6}}
    assert d[1]["key"] == "[b, with comma]" and d[1]["status"] == "failed" and d[1]["reason"] == 'bad "quote"'
    assert d[1]["score"] == ""  # NULL
    assert d[0]["seeds"] == "1" and d[0]["seed_std"] == ""
    store.add_reseed(run, d[0]["key"], 1, {"status": "ok", "score": 62.0, "metrics": {"SST-2": {"acc": 0.62}}})
    again = dict(zip(header, list(csv.reader(io.StringIO(store.export(run, "csv"))))[1]))
    assert (again["seeds"], float(again["score"]), float(again["seed_std"])) == ("2", 61.0, pytest.approx(2 ** 0.5))
    assert next(r for r in store.runs() if r["run_id"] == run)["best"] == 61.0  # the mean, not the lucky seed


def test_export_json(store):
    run = _filled(store)
    data = json.loads(store.export(run, "json"))
    assert data["run"]["run_id"] == run and data["run"]["config"] == {"sampler": "evolution"}
    assert [c["key"] for c in data["candidates"]] == ["[linear1_1(gelu(linear1_1(x,wb1)),wb2)]", "[b, with comma]"]
    assert data["candidates"][0]["metrics"] == {"SST-2": {"acc": 0.6}}
    assert data["candidates"][1]["score"] is None and data["candidates"][1]["status"] == "failed"


def test_export_of_an_unknown_run_is_a_store_error(store):
    _filled(store)
    with pytest.raises(StoreError, match="no run 'zzz'"):
        store.export("zzz", "json")


# -- concurrency ---------------------------------------------------------------------------------

WRITERS, PER_WRITER = 8, 1000  # the 8 x 1,000 (each add is its own committed transaction)


def _writer(path: str, run_id: str, wid: int, n: int, barrier) -> None:
    st = Store(path)
    barrier.wait()  # every process has imported and connected: now write at once
    for i in range(n):
        if not st.add(run_id, {"key": f"[w{wid}-{i}]", "status": "ok", "score": float(i), "params": i},
                      eval_hash="h", worker=f"w{wid}"):
            raise AssertionError(f"w{wid}: key {i} reported as a duplicate")
    st.close()


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "shared.db")
    st = Store(path)
    run = st.new_run({"concurrency": True})
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_writer, args=(path, run, w, PER_WRITER, barrier)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    rows = st.candidates(run)
    assert len(rows) == st.count(run) == WRITERS * PER_WRITER
    assert {r["key"] for r in rows} == {f"[w{w}-{i}]" for w in range(WRITERS) for i in range(PER_WRITER)}
    assert sorted(r["seq"] for r in rows) == list(range(WRITERS * PER_WRITER))  # unique, no gaps
    for w in range(WRITERS):  # each writer's rows arrived in its own order
        mine = [r for r in rows if r["worker"] == f"w{w}"]
        assert [r["key"] for r in mine] == [f"[w{w}-{i}]" for i in range(PER_WRITER)]
    # the file is a consistent database
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    st.close()


def test_readonly_open_leaves_an_older_store_untouched(tmp_path):
    """``show`` / ``export`` of a store committed to git (an older schema without ``reseeds``,
    rollback journal): it reads, and the directory and the file's bytes stay as they were."""
    import sqlite3
    path = tmp_path / "old.db"
    st = Store(path)
    run = st.new_run({"sampler": "random"})
    st.add(run, _result("[x]", 61.5), eval_hash="h")
    st.db.execute("DROP TABLE reseeds")
    st.db.execute("PRAGMA journal_mode=DELETE")
    st.close()
    before, files = path.read_bytes(), sorted(p.name for p in tmp_path.iterdir())
    ro = Store(path, readonly=True)
    assert [r["score"] for r in ro.candidates(run)] == [61.5] and ro.reseeds(run) == {}
    assert ro.runs()[0]["best"] == 61.5 and "61.5" in ro.export(run)
    with pytest.raises(sqlite3.OperationalError):
        ro.db.execute("DELETE FROM candidates")
    ro.close()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == files
    with pytest.raises(StoreError, match="no such store"):
        Store(tmp_path / "typo.db", readonly=True)


# -- bad files and bad rows (issue 23): one StoreError, nothing written ---------------------------

def _damage(path, pages: range = range(3, 7)) -> None:
    """Overwrite some pages in the middle of a store (a rollback-journal file) with garbage."""
    with open(path, "r+b") as f:
        for page in pages:
            f.seek(4096 * page)
            f.write(b"\xa5" * 4096)


def _many_rows(path, rows: int = 300) -> str:
    st = Store(path)
    run = st.new_run({"search": {}, "eval": {}})
    for i in range(rows):
        st.add(run, _result(f"[x{i}]", 60.0 + i % 7, curves={"loss": list(range(50))}), eval_hash="h")
    st.db.execute("PRAGMA journal_mode=DELETE")
    st.close()
    return run


def test_a_damaged_store_is_one_store_error(tmp_path, capsys):
    from exprsearch.cli import main as cli
    path = tmp_path / "runs.db"
    run = _many_rows(path)
    _damage(path)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="the file is damaged"):
        Store(path, create=False)  # what search --resume opens: checked before a search starts
    with pytest.raises(StoreError, match="the file is damaged"):
        Store(path, readonly=True).candidates(run)
    assert cli.main(["search", "--resume", "last", "--store", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: the file is damaged") and "Traceback" not in err
    assert path.read_bytes() == before


@pytest.mark.parametrize("mode", [{"create": True}, {"create": False}, {"readonly": True}])
def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path, mode):
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE runs (id INTEGER, name TEXT)")
    db.execute("INSERT INTO runs VALUES (1, 'theirs')")
    db.commit()
    db.close()
    before, files = path.read_bytes(), sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(StoreError, match="not an exprsearch store .*runs lacks run_id.*left unchanged"):
        Store(path, **mode)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == files


def test_an_empty_file_is_a_store_only_for_a_new_search(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    for mode in ({"create": False}, {"readonly": True}):
        with pytest.raises(StoreError, match="an empty file, not an exprsearch store"):
            Store(path, **mode)
        assert path.stat().st_size == 0
    st = Store(path)  # a search may start a new store in it
    assert st.runs() == []
    st.close()


def test_rows_with_malformed_json_read_as_damaged(store):
    run = store.new_run({"search": {}})
    store.add(run, _result("[a]", 61.0, curves={"loss": [1.0]}), eval_hash="h")
    store.add(run, _result("[b]", 62.0), eval_hash="h")
    store.add_reseed(run, "[a]", 1, _result("[a]", 63.0))
    store.add_exits(run, "[a]", "SST-2", "entropy", {}, [{"score": 1.0}])
    for sql in ("UPDATE candidates SET metrics = '{not json', curves = '[1, 2]' WHERE key = '[a]'",
                "UPDATE reseeds SET metrics = 'nan'", "UPDATE runs SET config = '{'", "UPDATE exits SET rows = '{}'"):
        store.db.execute(sql)
    rows = {r["key"]: r for r in store.candidates(run)}
    assert rows["[a]"]["metrics"] == {} and rows["[a]"]["curves"] == {}
    assert rows["[a]"]["damaged"] == ["metrics", "curves"] and "damaged" not in rows["[b]"]
    assert rows["[a]"]["score"] == 62.0  # the re-score's own score is intact: the mean of 61 and 63
    assert rows["[b]"]["metrics"] == {"SST-2": {"acc": 0.62}}
    assert store.run(run)["config"] == {} and store.run(run)["damaged"] == ["config"]
    assert store.exits(run)[0]["rows"] == [] and store.reseeds(run)["[a]"][1]["metrics"] == {}
    assert len(list(csv.reader(io.StringIO(store.export(run))))) == 3 and json.loads(store.export(run, "json"))


def test_a_full_disk_is_reported_as_such(store):
    run = store.new_run({})
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages + 2}")  # the file may grow by two pages only
    with pytest.raises(StoreError, match="disk is full") as err:
        for i in range(100):
            store.add(run, _result(f"[x{i}]", curves={"loss": list(range(200))}), eval_hash="h")
    assert str(store.path) in str(err.value) and "rollback" not in str(err.value)
    assert not store.db.in_transaction and store.count(run) == i  # the rows before are kept


def test_resume_of_a_run_with_a_damaged_or_foreign_config_is_one_message(tmp_path, capsys):
    from exprsearch.cli import main as cli
    st = Store(tmp_path / "runs.db")
    damaged = st.new_run({"search": {}, "eval": {}})
    st.db.execute("UPDATE runs SET config = '{\"search\": ' WHERE run_id = ?", (damaged,))
    exits = st.new_run({"command": "exits", "spec": "[x]"})
    st.close()
    for run, why in ((damaged, "its stored config is damaged"), (exits, "it is no search (made by exprsearch exits)")):
        assert cli.main(["search", "--resume", run, "--store", str(tmp_path / "runs.db")]) == 2
        assert capsys.readouterr().err == f"error: run {run} cannot be resumed: {why}\n"
