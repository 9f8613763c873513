"""GLUE TSV files --> examples and metrics: one task table for every GLUE layout.

Input: a GLUE directory (one folder per task, named as in GLUE: ``CoLA``, ``SST-2``, ``MRPC``,
``QQP``, ``STS-B``, ``MNLI``, ``QNLI``, ``RTE``, ``WNLI``) holding the standard ``train.tsv`` and
``dev.tsv`` (MNLI: ``dev_matched.tsv``/``dev_mismatched.tsv``).  Output: ``Examples`` (text pairs
and labels) and the task's metrics.  Invariants: columns are found by header name where the
file has a header (CoLA has none: fixed columns); a malformed row is a ``DataError`` naming
``file:line`` unless ``skip_bad_rows`` counts and skips it; ``TASKS`` is the only list of GLUE
tasks; a task of your own data (``userdata.py``: its ``files`` set) is found by ``task(name)`` once
an ``EvalConfig`` registered it, and ``read_split`` reads its files.  The records themselves
(``Task``, ``Examples``, ``DataError``) are ``records.py``'s, re-exported here.

>>> TASKS["STS-B"].regression, TASKS["MNLI"].labels
(True, ('contradiction', 'entailment', 'neutral'))
>>> round(compute_metrics("CoLA", [1, 0, 1, 1], [1, 0, 0, 1])["mcc"], 4)
0.5774
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from exprsearch.errors import ConfigError, ExprSearchError, suggest

from .records import DataError, Examples, Task
from .userdata import read_user_split, registered

__all__ = ["metric_std", "Task", "TASKS", "Examples", "DataError", "read_split", "compute_metrics", "score", "task",
           "file_digest", "is_glue", "main_metric", "scored_metric"]

TASKS: dict[str, Task] = {t.name: t for t in [
    Task("CoLA", ("3",), 1, ("0", "1"), ("mcc", "acc"), "mcc", header=False),
    Task("SST-2", ("sentence",), "label", ("0", "1"), ("acc",), "acc"),
    Task("MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1"), ("f1", "acc"), "f1"),
    Task("QQP", ("question1", "question2"), "is_duplicate", ("0", "1"), ("f1", "acc"), "f1"),
    Task("STS-B", ("sentence1", "sentence2"), "score", None, ("pearson", "spearman"), "pearson"),
    Task("MNLI", ("sentence1", "sentence2"), "gold_label", ("contradiction", "entailment", "neutral"),
         ("acc",), "acc", dev=("dev_matched", "dev_mismatched")),
    Task("QNLI", ("question", "sentence"), "label", ("entailment", "not_entailment"), ("acc",), "acc"),
    Task("RTE", ("sentence1", "sentence2"), "label", ("entailment", "not_entailment"), ("acc",), "acc"),
    Task("WNLI", ("sentence1", "sentence2"), "label", ("0", "1"), ("acc",), "acc"),
]}
def _norm(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


_ALIASES = {_norm(k): k for k in TASKS} | {"sts": "STS-B", "mnlim": "MNLI", "mnlimatched": "MNLI"}


def is_glue(name: str) -> bool:
    """Whether ``name`` names a GLUE task (``sst2``, ``STS-B``, ``mnli-m``, ...)."""
    return _norm(name) in _ALIASES


def task(name: str) -> Task:
    """Look a task up by name (case and '-' insensitive: ``sst2``, ``sts-b``): a GLUE task, or a
    user task an ``EvalConfig`` of this process registered (``rows/userdata.py``)."""
    key = _norm(name)
    if key in _ALIASES:
        return TASKS[_ALIASES[key]]
    found = registered(name)
    if found is not None:
        return found
    best = _ALIASES.get(suggest(key, list(_ALIASES)) or "")
    raise ConfigError(f"unknown GLUE task {name!r}" + (f"; did you mean {best!r}?" if best else
                      f"; choose from {', '.join(TASKS)}") + " (your own data: --train FILE --dev FILE "
                      "--text-columns COL --label-column COL)")


def file_digest(path: Path) -> str:
    """SHA-256 of a file's contents; of a folder (a ``datasets`` dataset on disk): of its files'
    relative names and contents."""
    h = hashlib.sha256()
    if Path(path).is_dir():
        for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode() + b"\0" + file_digest(f).encode())
        return h.hexdigest()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_split(data_dir: str | Path, t: Task | str, split: str, *, skip_bad_rows: bool = False,
               limit: int | None = None) -> Examples:
    """Read ``DATA_DIR/<task>/<split>.tsv`` (a user task: its own file of that split, ``data_dir``
    unused)."""
    t = task(t) if isinstance(t, str) else t
    if t.files:
        return read_user_split(t, split, skip_bad_rows=skip_bad_rows, limit=limit)
    path = Path(data_dir) / t.name / f"{split}.tsv"
    if not path.is_file():
        alt = [p.name for p in (Path(data_dir) / t.name).glob("*.tsv")] if (Path(data_dir) / t.name).is_dir() else []
        raise DataError(f"{path}: no such file" + (f" (found {', '.join(sorted(alt))})" if alt else
                        f"; expected a GLUE folder {t.name}/ with {split}.tsv in {data_dir}"))
    out = Examples(t, path)
    try:
        lines = path.read_text(encoding="utf-8-sig").split("\n")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from None
    if not any(line.strip() for line in lines):
        raise DataError(f"{path}: empty file (expected a GLUE {t.name} TSV"
                        + (f" whose header row names {', '.join(list(t.text) + [str(t.label)])})" if t.header else ")"))
    start = 0
    if t.header:
        header = lines[0].rstrip("\r").split("\t")
        try:
            cols = [header.index(c) for c in t.text]
            lab = header.index(t.label)  # type: ignore[arg-type]
        except ValueError:
            raise DataError(f"{path}:1: header {header} lacks a column of {list(t.text) + [t.label]}") from None
        if t.name == "MNLI":
            lab = len(header) - 1  # gold_label is the last column in every MNLI split
        start = 1
    else:
        cols, lab = [int(c) for c in t.text], int(t.label)
    need = max(cols + [lab]) + 1
    for lineno, line in enumerate(lines[start:], start + 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split("\t")
        problem = None
        if len(parts) < need:
            problem = f"has {len(parts)} columns, expected at least {need}"
        else:
            raw = parts[lab].strip()
            if t.regression:
                try:
                    value = float(raw)
                    if not math.isfinite(value):
                        raise ValueError
                except ValueError:
                    problem = f"label {raw!r} is not a number"
            elif raw not in t.labels:  # type: ignore[operator]
                problem = f"label {raw!r} is not one of {list(t.labels)}"  # type: ignore[arg-type]
            else:
                value = float(t.labels.index(raw))  # type: ignore[union-attr]
        if problem:
            if skip_bad_rows:
                out.skipped += 1
                continue
            raise DataError(f"{path}:{lineno}: {problem} (use --skip-bad-rows to skip such rows)")
        out.texts.append(tuple(parts[c] for c in cols))
        out.labels.append(value)
        if limit is not None and len(out) >= limit:
            out.cut_from = len(out) + sum(1 for rest in lines[lineno:] if rest.strip())  # counted, not read
            break
    if not out.texts:
        raise DataError(f"{path}: no usable rows")
    return out


# -- metrics -------------------------------------------------------------------------------

def _mcc(y: np.ndarray, p: np.ndarray) -> float:
    tp = float(np.sum((p == 1) & (y == 1)))
    tn = float(np.sum((p == 0) & (y == 0)))
    fp = float(np.sum((p == 1) & (y == 0)))
    fn = float(np.sum((p == 0) & (y == 1)))
    den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / den if den else 0.0


def _f1(y: np.ndarray, p: np.ndarray) -> float:
    tp = float(np.sum((p == 1) & (y == 1)))
    fp = float(np.sum((p == 1) & (y == 0)))
    fn = float(np.sum((p == 0) & (y == 1)))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _macro_f1(y: np.ndarray, p: np.ndarray, classes: int) -> float:
    """The mean over classes of each class's F1 (one class against the rest).

    >>> round(_macro_f1(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]), 3), 4)
    0.6
    """
    return float(np.mean([_f1((y == c).astype(int), (p == c).astype(int)) for c in range(classes)]))


def _rank(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(len(a))
    sa = a[order]
    i = 0
    while i < len(a):  # average ranks of ties
        j = i
        while j + 1 < len(a) and sa[j + 1] == sa[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2
        i = j + 1
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float(np.sum(a * a) * np.sum(b * b)))
    return float(np.sum(a * b) / den) if den else 0.0


def score(metrics: dict[str, dict[str, float]], tasks: Sequence[Task]) -> float:
    """The fitness of a candidate: the mean of the tasks' main metrics, x100 (the one formula);
    a task scored on held-out training rows carries that value as ``score``.

    >>> score({"RTE": {"acc": 0.6, "score": 0.64}, "CoLA": {"mcc": 0.3}}, [task("RTE"), task("CoLA")])
    47.0
    """
    vals = [metrics[t.name]["score"] if "score" in metrics[t.name] else metrics[t.name][t.main] for t in tasks]
    return 100.0 * sum(vals) / len(tasks)


def main_metric(name: str, metrics: dict[str, float]) -> str:
    """The main metric of a stored task's metrics: the GLUE table's, else (a user task, whose files
    this process may not know) accuracy or, for regression, Pearson's r.

    >>> main_metric("MRPC", {"f1": 0.8, "acc": 0.7}), main_metric("reviews", {"acc": 0.6, "macro_f1": 0.5})
    ('f1', 'acc')
    """
    if is_glue(name):
        return task(name).main
    return "acc" if "acc" in metrics else "pearson"


def scored_metric(name: str, metrics: dict[str, float]) -> tuple[str, float, float | None]:
    """(the rows a stored task's score was read from, its main metric there, that metric's
    bootstrap std or None): held-out training rows (``heldout_<metric>`` and ``score``) or dev.

    >>> scored_metric("SST-2", {"heldout_acc": 0.8, "heldout_acc_std": 0.02, "score": 0.8})
    ('held-out', 0.8, 0.02)
    >>> scored_metric("MRPC", {"f1": 0.85, "acc": 0.8})
    ('dev', 0.85, None)
    """
    if "score" in metrics:
        held = {k[len("heldout_"):]: v for k, v in metrics.items() if k.startswith("heldout_")}
        main = main_metric(name, held) if held else ""
        return "held-out", held.get(main, metrics["score"]), held.get(f"{main}_std")
    main = main_metric(name, metrics)
    return "dev", metrics[main], metrics.get(f"{main}_std")


def compute_metrics(t: Task | str, labels: Sequence[float] | np.ndarray,
                    preds: Sequence[float] | np.ndarray) -> dict[str, float]:
    """All of the task's metrics (as fractions); ``preds`` are class ids or regression values."""
    t = task(t) if isinstance(t, str) else t
    y, p = np.asarray(labels, dtype=np.float64), np.asarray(preds, dtype=np.float64)
    if len(y) != len(p) or not len(y):
        raise ExprSearchError(f"metrics need equal, non-empty label and prediction lists ({len(y)} vs {len(p)})")
    out: dict[str, float] = {}
    for m in t.metrics:
        if m == "acc":
            out[m] = float(np.mean(y == p))
        elif m == "mcc":
            out[m] = _mcc(y, p)
        elif m == "f1":
            out[m] = _f1(y, p)
        elif m == "macro_f1":
            out[m] = _macro_f1(y, p, t.num_labels)
        elif m == "pearson":
            out[m] = _pearson(y, p)
        elif m == "spearman":
            out[m] = _pearson(_rank(y), _rank(p))
    return out


def metric_std(t: Task | str, labels: Sequence[float], preds: Sequence[float], samples: int = 200,
               seed: int = 0) -> float:
    """Bootstrap standard deviation of the task's main metric over the dev rows: how far the score
    could move with another sample of dev rows of the same size.  The resamples are fixed by
    ``seed``, so candidates scored on the same dev set are measured alike.

    >>> round(metric_std("SST-2", [0, 1] * 200, [0, 1] * 150 + [1, 0] * 50), 3)
    0.022
    """
    t = task(t) if isinstance(t, str) else t
    y, p = np.asarray(labels, dtype=np.float64), np.asarray(preds, dtype=np.float64)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(samples):
        idx = rng.integers(0, len(y), len(y))
        vals.append(compute_metrics(t, y[idx], p[idx])[t.main])
    return float(np.std(vals, ddof=1))
