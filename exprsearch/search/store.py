"""evaluated candidates --> SQLite (WAL): the durable record of every run.

Input: ``CandidateResult``s and run configs.  Output: rows in ``runs``, ``candidates`` (and
``reseeds``: top candidates re-evaluated with more training seeds) that
survive ``kill -9`` at any moment: each result is committed in its own transaction before the
search moves on, and SQLite's write-ahead log makes the commit atomic.  Invariants: one row per
(run, candidate key); a key evaluated under the same evaluation config in *any* run is found by
``lookup`` (dedup across runs); concurrent writers (processes) are serialised by SQLite's lock
with a generous busy timeout, so none loses a write.

>>> import tempfile, os
>>> st = Store(os.path.join(tempfile.mkdtemp(), "runs.db"))
>>> run = st.new_run({"sampler": "random"})
>>> st.add(run, {"key": "[x]", "spec": "[x]", "status": "ok", "score": 61.5, "params": 10}, eval_hash="h")
True
>>> st.add(run, {"key": "[x]", "spec": "[x]", "status": "ok", "score": 99.0, "params": 10}, eval_hash="h")
False
>>> [r["score"] for r in st.candidates(run)]
[61.5]
"""
from __future__ import annotations

import csv
import functools
import io
import json
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from exprsearch import __version__
from exprsearch.errors import ExprSearchError
from exprsearch.lang.expr import ModelSpec
from exprsearch.search.stats import mean_std

from .damage import typed
from .storefile import creation_message, readonly_uri, remove_new

__all__ = ["Store", "default_store_path", "StoreError", "COLUMNS", "row_spec"]

COLUMNS = ("run_id", "key", "spec", "stage", "status", "reason", "score", "metrics", "params", "flops",
           "latency_ms", "seconds", "curves", "eval_hash", "config", "code_version", "created", "worker", "seq")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, created REAL, updated REAL, status TEXT, config TEXT,
    code_version TEXT, notes TEXT
);
CREATE TABLE IF NOT EXISTS candidates (
    run_id TEXT NOT NULL, key TEXT NOT NULL, spec TEXT, stage INTEGER, status TEXT, reason TEXT,
    score REAL, metrics TEXT, params INTEGER, flops REAL, latency_ms REAL, seconds REAL, curves TEXT,
    eval_hash TEXT, config TEXT, code_version TEXT, created REAL, worker TEXT, seq INTEGER,
    ffn_params INTEGER, latency TEXT, PRIMARY KEY (run_id, key)
);
CREATE INDEX IF NOT EXISTS candidates_by_key ON candidates (key, eval_hash);
CREATE TABLE IF NOT EXISTS reseeds (
    run_id TEXT NOT NULL, key TEXT NOT NULL, seed INTEGER NOT NULL, status TEXT, score REAL, metrics TEXT,
    created REAL, PRIMARY KEY (run_id, key, seed)
);
CREATE TABLE IF NOT EXISTS exits (
    run_id TEXT NOT NULL, created REAL, spec TEXT, task TEXT, policy TEXT, config TEXT, rows TEXT
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL, created REAL, task TEXT, dir TEXT, spec TEXT, score REAL, std REAL, info TEXT
);
"""
# the tables (and their columns) every version of the store has: a file without them is not ours
_REQUIRED = {"runs": ("run_id", "created", "updated", "status", "config", "code_version", "notes"),
             "candidates": COLUMNS}


@functools.lru_cache(maxsize=8192)
def row_spec(text: str) -> ModelSpec | None:
    """A stored spec's text as a parsed ``ModelSpec`` (the store is an edge: its text is parsed
    here and nowhere else in the search); None for a row this version cannot read.

    >>> str(row_spec("[x; gelu(x)]")), row_spec("no such op(x)")
    ('[x; gelu(x)]', None)
    """
    from exprsearch.lang.parsing import parse_spec
    try:
        return parse_spec(text, strict=False)
    except ExprSearchError:
        return None


class StoreError(ExprSearchError):
    """The store file is unusable (not a database, locked for too long, unknown run...)."""


def default_store_path() -> Path:
    """``$EXPRSEARCH_STORE`` or ``./exprsearch-runs.db``."""
    return Path(os.environ.get("EXPRSEARCH_STORE", "exprsearch-runs.db"))


class Store:
    """A SQLite file holding runs and their candidates."""

    def __init__(self, path: str | Path, timeout: float = 120.0, *, create: bool = True,
                 readonly: bool = False) -> None:
        """Open (or, with ``create``, make) the store at ``path``; commands that need an existing
        store pass ``create=False`` so that a mistyped path is an error, not a new empty store, and
        those that only read pass ``readonly=True``: the file is not touched (no schema upgrade, no
        journal change), e.g. a store committed to git stays clean."""
        self.path = Path(path)
        if (readonly or not create) and not self.path.is_file():
            raise StoreError(f"{self.path}: no such store (a search creates it; --store names another file)")
        new = not readonly and not self.path.exists()  # made here: removed whole if it cannot be
        try:
            if readonly:  # no -wal/-shm left beside it (storefile.py)
                self.db = sqlite3.connect(readonly_uri(self.path), uri=True, timeout=timeout, isolation_level=None)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            ours = self._check_schema(empty_ok=create and not readonly)  # before anything is written
            if readonly:
                return
            if ours and any(r[0] != "ok" for r in self.db.execute("PRAGMA quick_check(5)")):
                raise sqlite3.DatabaseError("database disk image is malformed (PRAGMA quick_check)")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self.db.executescript(_SCHEMA)  # a new store, or the tables a newer version added
            if "latency" not in {r[1] for r in self.db.execute("PRAGMA table_info(candidates)")}:
                self.db.execute("ALTER TABLE candidates ADD COLUMN latency TEXT")  # latency spread, relative (JSON)
            if "ffn_params" not in {r[1] for r in self.db.execute("PRAGMA table_info(candidates)")}:
                self.db.execute("ALTER TABLE candidates ADD COLUMN ffn_params INTEGER")  # the column a newer version added
        except (sqlite3.DatabaseError, OSError) as err:
            if new:  # a full disk: no 4 kB store and -wal/-shm left, and the disk is named, not the store
                if getattr(self, "db", None) is not None:
                    self.db.close()
                remove_new(self.path)
                raise StoreError(creation_message(self.path, str(err))) from None
            if isinstance(err, OSError):
                raise StoreError(f"{self.path}: cannot open the store ({err})") from None
            raise self._error(err, "not a usable exprsearch store") from None

    def _check_schema(self, empty_ok: bool) -> bool:
        """True if the file holds an exprsearch store, False if it is empty and ``empty_ok`` (a
        new store); else StoreError -- before anything is written, so a foreign file stays as it is."""
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            if empty_ok:
                return False
            raise StoreError(f"{self.path}: an empty file, not an exprsearch store (a search creates one; "
                             f"--store names another file)")
        for name, columns in _REQUIRED.items():
            have = {r[1] for r in self.db.execute(f"PRAGMA table_info({name})")} if name in tables else set()
            if not set(columns) <= have:
                raise StoreError(f"{self.path}: not an exprsearch store (its tables: {', '.join(sorted(tables))}; "
                                 f"{name} {'lacks ' + ', '.join(c for c in columns if c not in have) if have else 'is missing'}); "
                                 f"left unchanged")
        return True

    def _error(self, err: sqlite3.Error, what: str = "") -> StoreError:
        """One message for an SQLite error, naming the file (and what to do where there is something)."""
        text = str(err)
        if getattr(err, "sqlite_errorname", "") == "SQLITE_FULL" or "is full" in text:
            return StoreError(f"{self.path}: disk is full ({text}); nothing more was written -- free some space "
                              f"(a search continues with --resume)")
        if "malformed" in text:
            return StoreError(f"{self.path}: the file is damaged ({text}); `sqlite3 {self.path} .recover` may "
                              f"save its rows into a new store")
        return StoreError(f"{self.path}: {what} ({text})" if what else f"{self.path}: {text}")

    def _rows(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        """The rows of a query (an SQLite error becomes a ``StoreError``)."""
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None

    def close(self) -> None:
        self.db.close()

    def _write(self, sql: str, args: tuple) -> sqlite3.Cursor:
        for attempt in range(50):
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    cur = self.db.execute(sql, args)
                    self.db.execute("COMMIT")
                    return cur
                except BaseException:
                    if self.db.in_transaction:  # SQLite already rolled back after some errors (a full disk)
                        try:
                            self.db.execute("ROLLBACK")
                        except sqlite3.DatabaseError:
                            pass  # the error being raised says what happened
                    raise
            except sqlite3.DatabaseError as err:  # "database is locked" past the busy timeout: again
                if "locked" not in str(err) or attempt == 49:
                    raise self._error(err) from None
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    # -- runs -----------------------------------------------------------------------------------
    def new_run(self, config: dict[str, Any], run_id: str | None = None) -> str:
        run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        now = time.time()
        self._write("INSERT INTO runs VALUES (?,?,?,?,?,?,?)",
                    (run_id, now, now, "running", json.dumps(config, default=str), __version__, ""))
        return run_id

    def run(self, run_id: str) -> dict[str, Any]:
        rows = self._rows("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            known = [r[0] for r in self._rows("SELECT run_id FROM runs ORDER BY created DESC LIMIT 5")]
            raise StoreError(f"no run {run_id!r} in {self.path}" + (f"; recent runs: {', '.join(known)}" if known else ""))
        return _decode(rows[0], ("config",))

    def runs(self) -> list[dict[str, Any]]:
        """Every run: id, created, status, candidate count and best score (re-scored rows: their mean)."""
        out = [typed(dict(r)) for r in self._rows(
            "SELECT r.run_id, r.created, r.status, r.notes, COUNT(c.key) AS candidates, "
            "MAX(CASE WHEN typeof(c.score) IN ('real', 'integer') THEN c.score END) AS best "
            "FROM runs r LEFT JOIN candidates c ON c.run_id = r.run_id GROUP BY r.run_id ORDER BY r.created")]
        rescored = ({x[0] for x in self._rows("SELECT DISTINCT run_id FROM reseeds")}
                    if self._has_reseeds() else set())
        for r in out:
            if r["run_id"] in rescored:
                r["best"] = max(x["score"] for x in self.candidates(r["run_id"], status="ok"))
        return out

    def has_run(self, run_id: str) -> bool:
        """Whether the store holds a run of this id."""
        return bool(self._rows("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)))

    def set_status(self, run_id: str, status: str, notes: str = "") -> None:
        """A run's status (running | done | failed | interrupted) and why (``notes``, shown by ``show``)."""
        self._write("UPDATE runs SET status = ?, updated = ?, notes = ? WHERE run_id = ?",
                    (status, time.time(), notes, run_id))

    def forget(self, run_id: str, keys: list[str]) -> None:
        """Delete the run's rows of ``keys`` (failures that were not the candidates': a resumed
        run evaluates them again)."""
        for key in keys:
            self._write("DELETE FROM candidates WHERE run_id = ? AND key = ?", (run_id, key))

    def latest_run(self) -> str:
        rows = self._rows("SELECT run_id FROM runs ORDER BY created DESC LIMIT 1")
        if not rows:
            raise StoreError(f"{self.path} holds no runs yet")
        return rows[0][0]

    # -- candidates -----------------------------------------------------------------------------
    def add(self, run_id: str, result: dict[str, Any], *, eval_hash: str = "", stage: int = 1,
            config: dict[str, Any] | None = None, worker: str = "") -> bool:
        """Record one evaluated candidate; False if the run already has this key (kept as is)."""
        row = (run_id, result["key"], result.get("spec", result["key"]), stage, result.get("status", "ok"),
               result.get("reason", ""), result.get("score"), json.dumps(result.get("metrics", {})),
               result.get("params"), result.get("flops_per_token", result.get("flops")),
               result.get("latency_ms"), result.get("seconds"), json.dumps(result.get("curves", {})),
               eval_hash, json.dumps(config or {}, default=str), __version__, time.time(), worker,
               result.get("ffn_params"), json.dumps(result.get("latency") or {}), run_id)
        # seq (arrival order) is computed inside the same write transaction, so it is unique per run
        cols = ", ".join(COLUMNS[:-1] + ("ffn_params", "latency", "seq"))
        cur = self._write(f"INSERT OR IGNORE INTO candidates ({cols}) VALUES ({','.join('?' * (len(COLUMNS) + 1))}, "
                          f"(SELECT COALESCE(MAX(seq) + 1, 0) FROM candidates WHERE run_id = ?))", row)
        return cur.rowcount == 1

    def has(self, run_id: str, key: str) -> bool:
        return bool(self._rows("SELECT 1 FROM candidates WHERE run_id = ? AND key = ?", (run_id, key)))

    def lookup(self, key: str, eval_hash: str) -> dict[str, Any] | None:
        """A result for ``key`` under the same evaluation config from any run (dedup across runs)."""
        rows = self._rows("SELECT * FROM candidates WHERE key = ? AND eval_hash = ? AND status != 'failed' "
                          "ORDER BY created LIMIT 1", (key, eval_hash))
        return _decode(rows[0]) if rows else None

    def candidates(self, run_id: str, *, status: str | None = None, seeds: bool = True) -> list[dict[str, Any]]:
        """The run's rows in arrival order.  A row re-scored with more seeds (``add_reseed``) has
        its ``score`` and metrics averaged over all its seeds, ``seed_scores`` (its first score
        first) and ``seed_std``; ``seeds=False`` gives the first-seed rows as evaluated (what a
        resumed search replays)."""
        q = "SELECT * FROM candidates WHERE run_id = ?" + (" AND status = ?" if status else "") + " ORDER BY seq"
        rows = [_decode(r) for r in self._rows(q, (run_id, status) if status else (run_id,))]
        extra = self.reseeds(run_id) if seeds else {}
        return [_with_seeds(r, extra[r["key"]]) if r["key"] in extra and r["status"] == "ok" else r for r in rows]

    def _has_reseeds(self) -> bool:
        """False for a store of an older version opened read-only (its schema was not upgraded)."""
        return bool(self._rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'reseeds'"))

    def add_reseed(self, run_id: str, key: str, seed: int, result: dict[str, Any]) -> bool:
        """Record candidate ``key`` re-evaluated with training seed ``seed``; False if already there."""
        cur = self._write("INSERT OR IGNORE INTO reseeds VALUES (?,?,?,?,?,?,?)",
                          (run_id, key, seed, result.get("status", "ok"), result.get("score"),
                           json.dumps(result.get("metrics", {})), time.time()))
        return cur.rowcount == 1

    def reseeds(self, run_id: str) -> dict[str, dict[int, dict[str, Any]]]:
        """{key: {seed: {"status", "score", "metrics"}}} of the run's re-evaluations."""
        out: dict[str, dict[int, dict[str, Any]]] = {}
        if not self._has_reseeds():
            return out
        for r in self._rows("SELECT * FROM reseeds WHERE run_id = ? ORDER BY seed", (run_id,)):
            out.setdefault(r["key"], {})[r["seed"]] = {"status": r["status"], "score": r["score"],
                                                       "metrics": _decode(r, ("metrics",))["metrics"] or {}}
        return out

    def count(self, run_id: str) -> int:
        return self._rows("SELECT COUNT(*) FROM candidates WHERE run_id = ?", (run_id,))[0][0]

    # -- dynamic inference (exprsearch exits) ----------------------------------------------------
    def add_exits(self, run_id: str, spec: str, task: str, policy: str, config: dict[str, Any],
                  rows: list[dict[str, Any]]) -> None:
        """One policy's trade-off table (accuracy vs layers run vs speed-up) for a run's student."""
        self._write("INSERT INTO exits VALUES (?,?,?,?,?,?,?)", (run_id, time.time(), spec, task, policy,
                                                                json.dumps(config, default=str), json.dumps(rows)))

    def add_artifact(self, run_id: str, task: str, directory: str, spec: str, score: float, std: float,
                     info: dict[str, Any]) -> None:
        """A student ``exprsearch distill`` saved from this run (the report links its card)."""
        self._write("INSERT INTO artifacts VALUES (?,?,?,?,?,?,?,?)",
                    (run_id, time.time(), task, directory, spec, score, std, json.dumps(info, default=str)))

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        """The run's distilled students, oldest first (none in a store older than the table)."""
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'artifacts'").fetchone():
            return []
        return [_decode(r, ("info",)) for r in self._rows("SELECT * FROM artifacts WHERE run_id = ? ORDER BY created",
                                                          (run_id,))]

    def exits(self, run_id: str) -> list[dict[str, Any]]:
        return [_decode(r, ("config", "rows")) for r in self._rows("SELECT * FROM exits WHERE run_id = ? ORDER BY created",
                                                                  (run_id,))]

    # -- export ---------------------------------------------------------------------------------
    def export(self, run_id: str, fmt: str = "csv") -> str:
        rows = self.candidates(run_id)
        if fmt == "json":
            return json.dumps({"run": self.run(run_id), "candidates": rows}, indent=2, default=str)
        buf = io.StringIO()
        w = csv.writer(buf)
        flat = [c for c in COLUMNS if c not in ("curves", "config")] + ["seeds", "seed_std"]
        w.writerow(flat)  # score: the mean over the seeds of a re-scored row (seeds > 1)
        for r in rows:
            r = {**r, "seeds": len(r.get("seed_scores") or [0]), "seed_std": r.get("seed_std")}
            w.writerow([json.dumps(r[c]) if isinstance(r[c], (dict, list)) else r[c] for c in flat])
        return buf.getvalue()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for r in self._rows("SELECT * FROM candidates ORDER BY created"):
            yield _decode(r)


def _with_seeds(row: dict[str, Any], more: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """``row`` with score and numeric metrics averaged over its first seed and the successful
    re-evaluations ``more``.

    >>> r = _with_seeds({"score": 60.0, "metrics": {"RTE": {"acc": 0.6}}},
    ...                 {1: {"status": "ok", "score": 62.0, "metrics": {"RTE": {"acc": 0.62}}},
    ...                  2: {"status": "failed", "score": None, "metrics": {}}})
    >>> r["score"], r["seed_scores"], round(r["seed_std"], 3), round(r["metrics"]["RTE"]["acc"], 3)
    (61.0, [60.0, 62.0], 1.414, 0.61)
    """
    ok = [m for m in more.values() if m["status"] == "ok" and m["score"] is not None]
    if not ok:
        return row
    scores = [row["score"], *(m["score"] for m in ok)]
    mean, std = mean_std(scores)
    metrics = {}
    for task, first in (row.get("metrics") or {}).items():
        runs = [first, *(m["metrics"][task] for m in ok if task in m["metrics"])]
        numeric = {k for k in first if all(isinstance(r.get(k), (int, float)) for r in runs)}
        metrics[task] = {k: sum(r[k] for r in runs) / len(runs) if k in numeric else v for k, v in first.items()}
    return {**row, "score": mean, "metrics": metrics, "seed_scores": scores, "seed_std": std}


def _decode(row: sqlite3.Row, columns: tuple[str, ...] = ("metrics", "curves", "config", "latency")) -> dict[str, Any]:
    """A row as a dict with its JSON ``columns`` decoded.  A column that is not the JSON object (or,
    ``rows``, list) it was written as -- a damaged row -- reads as empty and is named in the row's
    ``damaged`` list; the file keeps its text.

    >>> d = _decode({"key": "[x]", "metrics": '{"RTE": {"acc": 0.5}}', "curves": "{not json", "config": None})
    >>> d["metrics"], d["curves"], d["config"], d["damaged"]
    ({'RTE': {'acc': 0.5}}, {}, None, ['curves'])
    """
    d = dict(row)
    for k in columns:
        if d.get(k):
            kind = list if k == "rows" else dict
            try:
                value = json.loads(d[k])
            except ValueError:
                value = None
            if not isinstance(value, kind):
                value = kind()
                d.setdefault("damaged", []).append(k)
            d[k] = value
    return typed(d)  # wrong-typed values (text in score, NaN metrics) read as missing: damage.py
