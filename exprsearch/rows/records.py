"""the records every reader yields: a ``Task`` (a file layout and its metrics), the ``Examples`` of
one split, and the ``DataError`` of a missing or malformed file.

Input: none (plain records).  Output: what the GLUE reader (``glue.py``) and the reader of your own
files (``userdata.py``) both produce, and everything downstream (tokens, the hold-out, training)
consumes.  Invariant: this module imports none of the readers, so they import it and each other in
one direction only (``glue`` -> ``userdata`` -> ``records``).

>>> t = Task("SST-2", ("sentence",), "label", ("0", "1"), ("acc",), "acc")
>>> t.num_labels, t.regression, t.identity()
(2, False, [])
>>> ex = Examples(t, Path("train.tsv"), [("a",), ("b",), ("c",)], [0.0, 1.0, 0.0])
>>> len(ex.head(2)), ex.head(2).before_cut
(2, 3)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from exprsearch.errors import ExprSearchError

__all__ = ["DataError", "Task", "Examples"]


class DataError(ExprSearchError):
    """A data file is missing or malformed (the message names ``file:line``)."""


@dataclass(frozen=True)
class Task:
    """One task's file layout and metrics (a GLUE task, or one of your own files)."""

    name: str                          # folder name, as in the GLUE distribution
    text: tuple[str, ...]              # text column names (one or two), or indices if no header
    label: str | int                   # label column name (or index)
    labels: tuple[str, ...] | None     # label vocabulary in file spelling; None = regression
    metrics: tuple[str, ...]           # metrics reported
    main: str                          # the metric used as fitness
    header: bool = True                # does the file start with a header row?
    dev: tuple[str, ...] = ("dev",)    # dev split file stems
    files: tuple[tuple[str, str], ...] = ()  # a user task's (split, file) pairs (rows/userdata.py); () = GLUE

    @property
    def regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    def identity(self) -> list:
        """What a user task's caches must key on beyond its files' contents (its columns and label
        vocabulary); [] for a GLUE task, whose cache keys stay as they were."""
        return [list(map(str, self.text)), str(self.label), self.labels] if self.files else []



@dataclass
class Examples:
    """Text pairs and labels of one split (labels are class ids, or floats for regression)."""

    task: Task
    path: Path
    texts: list[tuple[str, ...]] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)
    skipped: int = 0
    part: str = ""  # which rows of the file, when not all of them in file order (rows/holdout.py)
    cut_from: int | None = None  # the rows there were before a limit (max_train, max_dev) cut them

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def before_cut(self) -> int:
        """How many rows there were before a limit cut them (``len`` when none did)."""
        return len(self) if self.cut_from is None else self.cut_from

    def head(self, n: int | None) -> "Examples":
        if n is None or n >= len(self):
            return self
        return Examples(self.task, self.path, self.texts[:n], self.labels[:n], self.skipped, self.part, self.before_cut)
