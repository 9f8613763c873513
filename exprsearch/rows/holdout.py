"""a task's files --> three disjoint row sets: training rows, held-out rows (every selection), dev rows (reported).

Input: a task (GLUE or your own data), how many training rows to hold out, the row limits.  Output:
``Rows`` -- the rows the teacher and every student train on, the held-out rows that choose
candidates, checkpoints and seeds, and the dev rows that are only ever reported.  Invariants:

* the held-out rows are drawn **to resemble dev**: only *maximal* training rows (no other training
  row contains them -- in SST-2 the whole sentences, not their phrases), matched to the dev set's
  length distribution (deciles of words per row), with a fixed seed: the same rows for every
  training seed, so held-out scores pair across seeds;
* nothing of a held-out row is trained on: the row itself, every copy of it, and every training
  row it contains (SST-2 labels the phrases of each sentence) leave the training rows -- of the
  teacher too (``kd/teacher.py`` reads the same ``Rows``);
* the draw looks at the texts only, never at a label or at the dev labels; ``max_train`` cuts the
  training rows *after* the hold-out, so a small preset still holds out whole sentences.

>>> from exprsearch.rows.glue import Examples, task
>>> t = task("SST-2")
>>> sents = [f"w{i} a b c d e f g" for i in range(10)]
>>> phrases = [s.split(" a ")[0] + " a" for s in sents]   # a phrase of each sentence
>>> train = Examples(t, Path("train.tsv"), [(s,) for s in sents + phrases], [1.0] * 20)
>>> dev = Examples(t, Path("dev.tsv"), [("x a b c d e f g",)] * 5, [1.0] * 5)
>>> held, removed = draw_heldout(train, dev, 4)
>>> len(held), all(i < 10 for i in held), len(removed)   # whole sentences only; their phrases leave too
(4, True, 4)
"""
from __future__ import annotations

import bisect
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from .glue import Examples, Task, read_split

__all__ = ["Rows", "task_rows", "draw_heldout", "HOLDOUT_SEED", "HOLDOUT_RULE"]

HOLDOUT_SEED = 20211   # the draw's seed: fixed, so every training seed is scored on the same rows
HOLDOUT_RULE = "dev-like-v1"  # names the draw (maximal rows, dev's length deciles, contained rows removed)
MAX_SHARE = 5          # at most a fifth of the training rows are held out


@dataclass
class Rows:
    """The three disjoint row sets of one task."""

    train: Examples                # the teacher's and the students' training rows
    heldout: Examples | None       # rows every selection reads (None: nothing held out)
    dev: Examples                  # reported only
    removed: int = 0               # training rows dropped because a held-out row contains them

    def describe(self) -> str:
        """One log line: how many rows each set has (and of how many, where a limit -- a preset's
        ``max_train`` / ``max_dev`` -- cut them), and how alike held-out and dev are."""
        train, dev = _count(self.train, "training", "max_train"), _count(self.dev, "dev", "max_dev")
        if self.heldout is None:
            return f"{train}, {dev} (nothing held out)"
        return (f"{train}, {len(self.heldout):,} held out to choose on "
                f"({_mean_words(self.heldout.texts):.1f} words a row; dev {_mean_words(self.dev.texts):.1f}), "
                f"{dev} reported only; {self.removed:,} training rows inside held-out rows removed")

    def counts(self) -> dict[str, int]:
        """The rows of each set, and how many there were before a limit cut them."""
        return {"train": len(self.train), "train_before_cut": self.train.before_cut,
                "heldout": 0 if self.heldout is None else len(self.heldout), "dev": len(self.dev),
                "dev_before_cut": self.dev.before_cut, "removed": self.removed}


def _count(ex: Examples, what: str, limit: str) -> str:
    """``ex``'s size for a log line, saying so where a limit cut it.

    >>> from exprsearch.rows.glue import task
    >>> ex = Examples(task("SST-2"), Path("train.tsv"), [("a",)] * 200, [0.0] * 200, cut_from=1300)
    >>> _count(ex, "training", "max_train")
    '200 of 1,300 training rows (cut by max_train 200: --max-train none keeps them all)'
    >>> _count(Examples(task("SST-2"), Path("dev.tsv"), [("a",)] * 872, [0.0] * 872), "dev", "max_dev")
    '872 dev rows'
    """
    if ex.cut_from is None:
        return f"{len(ex):,} {what} rows"
    return (f"{len(ex):,} of {ex.cut_from:,} {what} rows (cut by {limit} {len(ex)}: --{limit.replace('_', '-')} none "
            f"keeps them all)")


def _norm(texts: tuple[str, ...]) -> str:
    return " \x1f ".join(" ".join(s.lower().split()) for s in texts)


def _words(texts: tuple[str, ...]) -> int:
    return sum(len(s.split()) for s in texts)


def _mean_words(rows: Sequence[tuple[str, ...]]) -> float:
    return sum(map(_words, rows)) / max(1, len(rows))


class _Containment:
    """Which rows of ``big`` contain a text as a run of whole words (an index on each row's words;
    a query scans only the rows holding its rarest word)."""

    def __init__(self, big: list[str]) -> None:
        self.big = [f" {b} " for b in big]
        self.post: dict[str, list[int]] = defaultdict(list)
        for i, b in enumerate(big):
            for w in set(b.split()):
                self.post[w].append(i)

    def containers(self, text: str) -> list[int]:
        words = set(text.split())
        if not words:
            return []
        rare = min(words, key=lambda w: len(self.post.get(w, ())))
        padded = f" {text} "
        return [j for j in self.post.get(rare, ()) if padded in self.big[j]]


def draw_heldout(train: Examples, dev: Examples, rows: int, seed: int = HOLDOUT_SEED) -> tuple[list[int], list[int]]:
    """(held-out row indices, indices of the other training rows a held-out row contains or
    copies) -- see the module docstring.  At most a fifth of the rows, at most the maximal ones."""
    texts = [_norm(t) for t in train.texts]
    index = _Containment(texts)
    maximal = [i for i, s in enumerate(texts) if s and all(len(texts[j]) <= len(s) for j in index.containers(s))]
    unique = list({texts[i]: i for i in reversed(maximal)}.values())[::-1]  # one row per text, the first
    want = min(rows, len(train) // MAX_SHARE, len(unique))
    if want <= 0:
        return [], []
    rng = random.Random(seed)
    dev_len = sorted(_words(t) for t in dev.texts)
    edges = [dev_len[min(len(dev_len) - 1, (k * len(dev_len)) // 10)] for k in range(1, 10)]
    bins: dict[int, list[int]] = defaultdict(list)
    for i in unique:
        bins[bisect.bisect_right(edges, _words(train.texts[i]))].append(i)
    dev_bins = Counter(bisect.bisect_right(edges, n) for n in dev_len)
    held: list[int] = []
    for b in range(10):
        quota = round(want * dev_bins.get(b, 0) / len(dev_len))
        pool = bins.get(b, [])
        held += rng.sample(pool, min(quota, len(pool)))
    if len(held) < want:  # a length bin of dev short of maximal rows: the nearest lengths fill it
        taken = set(held)
        median = dev_len[len(dev_len) // 2]
        rest = sorted((i for i in unique if i not in taken), key=lambda i: (abs(_words(train.texts[i]) - median), i))
        held += rest[:want - len(held)]
    held = sorted(held[:want])
    inside = set()
    heldset = set(held)
    hindex = _Containment([texts[i] for i in held])
    for i, s in enumerate(texts):
        if i not in heldset and s and hindex.containers(s):
            inside.add(i)
    return held, sorted(inside)


def _subset(ex: Examples, index: list[int], part: str) -> Examples:
    return replace(ex, texts=[ex.texts[i] for i in index], labels=[ex.labels[i] for i in index], part=part)


def task_rows(data_dir: str | Path, t: Task, *, heldout_rows: int = 0, max_train: int | None = None,
              max_dev: int | None = None, skip_bad_rows: bool = False) -> Rows:
    """Read a task's training and dev rows and split off the held-out rows (none when
    ``heldout_rows`` is 0: then the first ``max_train`` rows train, as always)."""
    dev = read_split(data_dir, t, t.dev[0], limit=max_dev, skip_bad_rows=skip_bad_rows)
    if heldout_rows <= 0:
        return Rows(read_split(data_dir, t, "train", limit=max_train, skip_bad_rows=skip_bad_rows), None, dev)
    full = read_split(data_dir, t, "train", skip_bad_rows=skip_bad_rows)
    held, inside = draw_heldout(full, dev, heldout_rows)
    if not held:
        return Rows(full.head(max_train), None, dev)
    drop = set(held) | set(inside)
    rest = [i for i in range(len(full)) if i not in drop]
    part = f"{HOLDOUT_RULE}:{heldout_rows}"
    train = _subset(full, rest, f"train-minus-{part}").head(max_train)
    return Rows(train, _subset(full, held, f"heldout-{part}"), dev, removed=len(inside))
