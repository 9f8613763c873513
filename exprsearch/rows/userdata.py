"""your own data files --> a ``Task`` and its ``Examples``: CSV, TSV, JSONL or a ``datasets`` folder.

Input: a ``UserData`` -- the task's name, training and dev files, text column(s), label column and
whether the labels are numbers -- which is what an ``EvalConfig`` carries (plain strings: it
pickles to worker processes, and a config registers it, there too, so ``glue.task(name)`` finds
it).  Output: the GLUE reader's records: a ``Task`` whose ``labels`` are the training file's labels
in a stable order (by value where all are integers, else sorted; a ``datasets`` ``ClassLabel``
keeps its own order) and whose ``files`` name its splits, and the ``Examples`` of a split.
Invariants: a bad file is one ``DataError`` naming ``file:line`` and the column, as in the GLUE
reader (a row's problem is skipped and counted with ``skip_bad_rows``); a dev label the training
file lacks is an error, never a new class; the metrics are accuracy (and macro-F1 beyond two
classes), or Pearson's and Spearman's r for regression.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "r.csv").write_text("review,stars\\ngood film,pos\\nbad film,neg\\nso-so,neu\\n")
>>> t = user_task(UserData("reviews", str(d / "r.csv"), str(d / "r.csv"), ("review",), "stars"))
>>> t.labels, t.metrics, t.main
(('neg', 'neu', 'pos'), ('acc', 'macro_f1'), 'acc')
>>> ex = read_user_split(t, "dev")
>>> ex.texts[0], ex.labels
(('good film',), [2.0, 0.0, 1.0])
"""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

from exprsearch.errors import suggest

from .records import DataError, Examples, Task

__all__ = ["UserData", "user_task", "read_user_split", "register", "registered", "check_files", "FORMATS"]

# file suffix -> format; a folder is a dataset written by datasets' save_to_disk
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_SKIP_HINT = " (use --skip-bad-rows to skip such rows)"

Rows = Iterator[tuple[str, "dict[str, Any] | str"]]  # (where: 'file:line', the row's values or its problem)


@dataclass(frozen=True)
class UserData:
    """One task of your own: where its rows are and which columns hold what."""

    name: str                       # the task's name (--task; default: the training file's stem)
    train: str                      # training file (CSV, TSV, JSONL) or datasets folder
    dev: str                        # dev file, same kinds
    text: tuple[str, ...]           # the text column, or two (a sentence pair)
    label: str                      # the label column
    regression: bool = False        # labels are numbers (else class names)
    skip_bad_rows: bool = False     # count and skip malformed rows instead of stopping


# -- reading rows ------------------------------------------------------------------------------

def _missing(column: str, have: list[str], what: str = "column", whose: str = "the file") -> str:
    """The problem of a column that is not there, naming those that are.

    >>> _missing("stars", ["review", "star"])
    "no column 'stars' (did you mean 'star'?); the file has columns 'review', 'star'"
    """
    near = suggest(column, have)
    return (f"no {what} {column!r}" + (f" (did you mean {near!r}?)" if near else "")
            + f"; {whose} has {what}s {', '.join(map(repr, have)) or 'none'}")


def _table_rows(path: Path, delimiter: str, columns: list[str]) -> Rows:
    """Rows of a CSV or TSV file with a header row (TSV unquoted, as GLUE's)."""
    quoting: Literal[0, 1, 2, 3] = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
            header = next((r for r in reader if any(c.strip() for c in r)), None)
            if header is None:
                raise DataError(f"{path}: empty file (expected a header row naming {', '.join(columns)})")
            header = [h.strip() for h in header]
            for c in columns:
                if c not in header:
                    raise DataError(f"{path}:{reader.line_num}: {_missing(c, header)}")
            at = {c: header.index(c) for c in columns}
            for parts in reader:
                if not any(p.strip() for p in parts):
                    continue
                where = f"{path}:{reader.line_num}"
                if len(parts) != len(header):  # too many is as wrong as too few: a value lost its quotes
                    yield where, _field_count(len(parts), len(header), delimiter)
                else:
                    yield where, {c: parts[i] for c, i in at.items()}
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from None
    except csv.Error as err:
        raise DataError(f"{path}: not a readable {'TSV' if delimiter == chr(9) else 'CSV'} file ({err})") from None


def _field_count(got: int, want: int, delimiter: str) -> str:
    """The problem of a row with another number of fields than its header.

    >>> _field_count(4, 3, ",")
    'has 4 fields, the header has 3 (a value holding a comma needs double quotes)'
    >>> _field_count(2, 3, chr(9))
    'has 2 fields, the header has 3'
    """
    hint = (" (a value holding a comma needs double quotes)" if delimiter == "," else
            " (a value may not hold a tab)") if got > want else ""
    return f"has {got} fields, the header has {want}{hint}"


def _json_problem(err: json.JSONDecodeError) -> str:
    """A JSONL line's decoding error, said once (json's own messages may end in 'at').

    >>> try:
    ...     json.loads('{"a": "unterminated')
    ... except json.JSONDecodeError as err:
    ...     print(_json_problem(err))
    not a JSON object (Unterminated string starting at column 7)
    """
    msg = err.msg[:-3] if err.msg.endswith(" at") else err.msg
    return f"not a JSON object ({msg} at column {err.colno})"


def _jsonl_rows(path: Path, columns: list[str]) -> Rows:
    """Rows of a JSON Lines file: one object per line (blank lines skipped)."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    yield where, _json_problem(err)
                    continue
                if not isinstance(obj, dict):
                    yield where, f"not a JSON object but a JSON {type(obj).__name__} (JSONL: one object per line)"
                    continue
                lacking = next((c for c in columns if c not in obj), None)
                if lacking is not None:
                    yield where, _missing(lacking, list(obj), "key", "the line")
                    continue
                yield where, {c: obj[c] for c in columns}
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from None


def _dataset(path: Path, split: str) -> tuple[Path, Any]:
    """(the split's folder, the ``datasets.Dataset``) of a folder written by ``save_to_disk``: a
    Dataset, or a DatasetDict whose ``train`` (training) or ``validation``/``dev``/``test`` split is read."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"{path} is a folder: a dataset saved by datasets' save_to_disk is read with the datasets "
                        f"package: pip install datasets (or give a .csv, .tsv or .jsonl file)") from None
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        wanted = ("train",) if split == "train" else ("validation", "dev", "test")
        pick = next((s for s in wanted if s in splits), None)
        if pick is None:
            raise DataError(f"{path}: a DatasetDict with splits {', '.join(splits)} but no {' / '.join(wanted)} "
                            f"split; name a split's folder instead, e.g. {path / splits[0]}" if splits else
                            f"{path}: a DatasetDict without splits")
        path = path / pick
    if not (path / "state.json").is_file():
        raise DataError(f"{path}: a folder that is no dataset written by datasets' save_to_disk "
                        f"(no state.json or dataset_dict.json)")
    try:
        return path, datasets.load_from_disk(str(path))
    except Exception as err:  # noqa: BLE001 - any failure to load a foreign folder is the data's
        raise DataError(f"{path}: cannot load the dataset ({type(err).__name__}: {err})") from None


def _dataset_rows(path: Path, ds: Any, columns: list[str]) -> Rows:
    have = list(ds.column_names)
    for c in columns:
        if c not in have:
            raise DataError(f"{path}: {_missing(c, have, whose='the dataset')}")
    for i, row in enumerate(ds.select_columns(columns), 1):
        yield f"{path}, row {i}", row


def _open(path_text: str, split: str, columns: list[str], label: str) -> tuple[Path, tuple[str, ...] | None, Rows]:
    """(the split's path, the label column's ClassLabel names if it has them, its rows)."""
    path = Path(path_text)
    if path.is_dir():
        path, ds = _dataset(path, split)
        feature = ds.features.get(label)
        names = tuple(feature.names) if hasattr(feature, "names") and hasattr(feature, "int2str") else None
        return path, names, _dataset_rows(path, ds, columns)
    if not path.is_file():
        raise DataError(f"{path}: no such file (the {'training' if split == 'train' else 'dev'} file of your data)")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown format {path.suffix or '(no suffix)'!r}: give a .csv, .tsv or .jsonl file, "
                        f"or a folder written by datasets' save_to_disk")
    if kind == "jsonl":
        return path, None, _jsonl_rows(path, columns)
    return path, None, _table_rows(path, "," if kind == "csv" else "\t", columns)


# -- labels ------------------------------------------------------------------------------------

def _raw(value: Any, names: tuple[str, ...] | None) -> str:
    """A label cell as text: strings stripped, JSON values written as JSON, ClassLabel ids as names."""
    if value is None:
        return ""
    if names is not None and isinstance(value, int) and 0 <= value < len(names):
        return names[value]
    return value.strip() if isinstance(value, str) else json.dumps(value)


def _order(labels: set[str]) -> tuple[str, ...]:
    """The stable order of a label vocabulary: by value where all are integers, else sorted.

    >>> _order({"10", "2", "-1"}), _order({"pos", "neg", "neu"})
    (('-1', '2', '10'), ('neg', 'neu', 'pos'))
    """
    if all(re.fullmatch(r"[+-]?\d+", s) for s in labels):
        return tuple(sorted(labels, key=lambda s: (int(s), s)))
    return tuple(sorted(labels))


def _problem(raw: str, data: UserData, vocab: tuple[str, ...] | None) -> tuple[str | None, float]:
    """(what is wrong with a label, or None; its value: a number, or a class id)."""
    if not raw:
        return f"empty label in column {data.label!r}", 0.0
    if data.regression:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            return f"label {raw!r} in column {data.label!r} is not a number (the task is --regression)", 0.0
        return None, value
    if vocab is None:  # collecting the training labels
        return None, 0.0
    if raw not in vocab:
        return (f"label {raw!r} in column {data.label!r} is not a label of the training file "
                f"({', '.join(vocab)})"), 0.0
    return None, float(vocab.index(raw))


def _read(data: UserData, split: str, vocab: tuple[str, ...] | None, limit: int | None,
          out: Examples | None) -> tuple[set[str], tuple[str, ...] | None]:
    """Read one split row by row; fill ``out`` (texts, labels) or, without it, collect the labels."""
    path, names, rows = _open(data.train if split == "train" else data.dev, split, [*data.text, data.label], data.label)
    if out is not None:
        out.path = path
    seen: set[str] = set()
    problem: str | None
    for where, row in rows:
        if isinstance(row, str):
            problem, value, raw = row, 0.0, ""
        else:
            raw = _raw(row[data.label], names)
            problem, value = _problem(raw, data, vocab)
        if problem:
            if data.skip_bad_rows:
                if out is not None:
                    out.skipped += 1
                continue
            raise DataError(f"{where}: {problem}{_SKIP_HINT}")
        seen.add(raw)
        if out is not None:
            out.texts.append(tuple("" if row[c] is None else str(row[c]) for c in data.text))  # type: ignore[index]
            out.labels.append(value)
            if limit is not None and len(out) >= limit:
                out.cut_from = len(out) + sum(1 for _ in rows)  # the rows after the limit, counted, not read
                break
    return seen, names


# -- the task --------------------------------------------------------------------------------

_REGISTRY: dict[str, UserData] = {}
_BUILT: dict[tuple[UserData, tuple[int, int]], Task] = {}


def _stamp(path: str) -> tuple[int, int]:
    """(newest modification, total size) of a file or folder: a changed file is read again."""
    p = Path(path)
    files = [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else [p] if p.is_file() else []
    stats = [f.stat() for f in files]
    return max((s.st_mtime_ns for s in stats), default=0), sum(s.st_size for s in stats)


def user_task(data: UserData) -> Task:
    """The ``Task`` of ``data``: its label vocabulary read from the whole training file (once per
    version of the file in a process)."""
    key = (data, _stamp(data.train))
    if key in _BUILT:
        return _BUILT[key]
    files = (("train", data.train), ("dev", data.dev))
    if data.regression:
        _read(data, "train", None, None, None)  # every row checked now, not at training time
        t = Task(data.name, data.text, data.label, None, ("pearson", "spearman"), "pearson", files=files)
    else:
        seen, names = _read(data, "train", None, None, None)
        if not seen:
            raise DataError(f"{data.train}: no usable rows")
        vocab = tuple(n for n in names if n in seen) if names is not None else _order(seen)
        if len(vocab) < 2:
            raise DataError(f"{data.train}: every row has label {vocab[0]!r} in column {data.label!r}: a classifier "
                            f"needs at least two classes (numbers to predict: --regression)")
        metrics = ("acc", "macro_f1") if len(vocab) > 2 else ("acc",)
        t = Task(data.name, data.text, data.label, vocab, metrics, "acc", files=files)
    _BUILT[key] = t
    return t


def read_user_split(t: Task, split: str, *, skip_bad_rows: bool = False, limit: int | None = None) -> Examples:
    """The ``Examples`` of a user task's split (``train`` or ``dev``; first ``limit`` rows)."""
    files = dict(t.files)
    if split not in files:
        raise DataError(f"task {t.name}: no {split!r} split (your own data has train and dev)")
    data = UserData(t.name, files["train"], files["dev"], tuple(map(str, t.text)), str(t.label), t.regression,
                    skip_bad_rows)
    out = Examples(t, Path(files[split]))
    _read(data, split, t.labels, limit, out)
    if not out.texts:
        raise DataError(f"{out.path}: no usable rows")
    return out


def check_files(data: UserData, max_dev: int | None = None) -> Task:
    """Read both files now (the training file whole, the dev rows a protocol uses): a bad file is
    one ``DataError`` before anything is trained or stored."""
    t = user_task(data)
    read_user_split(t, "dev", skip_bad_rows=data.skip_bad_rows, limit=max_dev)
    return t


def register(data: UserData) -> None:
    """Make ``glue.task(data.name)`` find this task in this process (a config does it when built
    or unpickled)."""
    _REGISTRY[data.name.casefold()] = data


def registered(name: str) -> Task | None:
    """The registered user task called ``name`` (any case), or None."""
    data = _REGISTRY.get(name.casefold())
    return None if data is None else user_task(data)
