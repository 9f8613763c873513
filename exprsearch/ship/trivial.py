"""dev rows + a model's predictions --> is it better than guessing?  The card's and the log's check.

Input: a task, its training and dev labels, and the dev predictions of the shipped student and of
its teacher.  Output: the best constant predictor on the same dev rows -- always one class (the
best on dev of every class: for accuracy the most frequent dev label) or, for regression, always
the training mean (it correlates with nothing; its RMSE is the dev labels' spread around that
mean) --, each model's metrics on those rows with the bootstrap std of the main one, what it
predicts (its most frequent class and how often; the range of its values), and plain warnings
where the student or the teacher is not better than the constant by more than ``MARGIN``
bootstrap stds, or a regression student's values are further from the labels than the mean's.
Invariant: every number comes from the dev rows the card reports; nothing here selects anything.

>>> from exprsearch.rows.glue import task
>>> t = task("SST-2")
>>> const = constant_predictor(t, [0, 1, 1], [0, 0, 0, 1, 1])
>>> const["what"], round(const["metrics"]["acc"], 2)
("always predicting '0' (the best constant on these rows)", 0.6)
>>> student = judge(t, [0, 0, 0, 1, 1], [1, 1, 1, 1, 1])
>>> student["note"]
"predicts '1' for 5 of 5 rows"
>>> for w in warnings(t, const, student, None):
...     print(w[:72])
the student is not better than always predicting '0' (40.00 vs 60.00 on
the student predicts '1' for every one of the 5 dev rows
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from exprsearch.rows.glue import Task, compute_metrics, metric_std

from .markdown import md

if TYPE_CHECKING:
    import torch
    from torch import nn

    from exprsearch.kd.prepare import TaskState

__all__ = ["constant_predictor", "judge", "warnings", "check", "data_line", "card_lines", "headline", "MARGIN"]

MARGIN = 2.0  # a model beats the constant when its main metric is higher by more than this many bootstrap stds


def _name(t: Task, cls: float) -> str:
    return str(t.labels[int(cls)]) if t.labels is not None else f"{cls:g}"


def _rmse(labels: Sequence[float], preds: Sequence[float]) -> float:
    return float(np.sqrt(np.mean((np.asarray(labels, float) - np.asarray(preds, float)) ** 2)))


def constant_predictor(t: Task, train_labels: Sequence[float], dev_labels: Sequence[float]) -> dict[str, Any]:
    """The best prediction that ignores the text, on ``dev_labels`` (see the module docstring)."""
    if t.regression:
        mean = float(np.mean(train_labels))
        metrics = {m: 0.0 for m in t.metrics}  # a constant correlates with nothing
        return {"what": f"always predicting {mean:.3g} (the training labels' mean)", "value": mean, "metrics": metrics,
                "rmse": _rmse(dev_labels, [mean] * len(dev_labels))}
    scored = []
    for cls in range(t.num_labels):
        metrics = compute_metrics(t, dev_labels, [float(cls)] * len(dev_labels))
        scored.append((metrics[t.main], -cls, metrics))
    best, neg_cls, metrics = max(scored)
    name = _name(t, -neg_cls)
    return {"what": f"always predicting {name!r} (the best constant on these rows)", "value": name, "metrics": metrics}


def judge(t: Task, labels: Sequence[float], preds: Sequence[float]) -> dict[str, Any]:
    """A model's dev metrics (the main one's bootstrap std as ``<main>_std``) and what it predicts."""
    metrics = compute_metrics(t, labels, preds)
    metrics[f"{t.main}_std"] = metric_std(t, labels, preds)
    out: dict[str, Any] = {"metrics": metrics, "rows": len(preds)}
    if t.regression:
        out["rmse"] = _rmse(labels, preds)
        out["range"] = [float(min(preds)), float(max(preds))]
        out["note"] = (f"predicts {min(preds):.2f} to {max(preds):.2f} (the labels: {min(labels):.2f} to "
                       f"{max(labels):.2f})")
    else:
        cls, n = Counter(preds).most_common(1)[0]
        out["mode"], out["mode_share"] = _name(t, cls), n / len(preds)
        out["note"] = f"predicts {_name(t, cls)!r} for {n} of {len(preds)} rows"
    return out


def warnings(t: Task, const: dict[str, Any], student: dict[str, Any], teacher: dict[str, Any] | None,
             cut: bool = False) -> list[str]:
    """Plain sentences for the card and the log: whoever is not better than the constant (the
    teacher's remedy names ``--max-train none`` only where a limit ``cut`` the training rows)."""
    out = []
    target = const["what"].split(" (")[0]
    more = ("more training rows (--max-train none) or epochs (--teacher-epochs)" if cut
            else "more epochs (--teacher-epochs) or more labelled rows")
    for who, m, fix in (("student", student, "it has not learned the task"),
                        ("teacher", teacher, f"the student had little to learn from it: give the teacher {more}")):
        if m is None:
            continue
        mine, theirs = m["metrics"][t.main], const["metrics"][t.main]
        std = m["metrics"].get(f"{t.main}_std") or 0.0
        if mine - theirs <= MARGIN * std:
            out.append(f"the {who} is not better than {target} ({100 * mine:.2f} vs "
                       f"{100 * theirs:.2f} on {t.main}; a real difference is more than {MARGIN:g} x its bootstrap "
                       f"std {100 * std:.2f}): {fix}")
        if not t.regression and m.get("mode_share") == 1.0:
            out.append(f"the {who} predicts {m['mode']!r} for every one of the {m['rows']} dev rows")
    if t.regression and student.get("rmse") is not None and student["rmse"] >= const["rmse"]:
        out.append(f"the student's values are further from the labels than the training mean's (RMSE "
                   f"{student['rmse']:.3f} vs {const['rmse']:.3f}): it {student['note']}")
    return out


def check(st: TaskState, model: nn.Module, device: torch.device, seed: int) -> dict[str, Any]:
    """The check of a shipped ``model`` (seed ``seed``) on task state ``st``'s dev rows: the
    constant predictor, the student's and the teacher's predictions, the warnings, the rows."""
    from exprsearch.engine.train import predict
    t, labels = st.task, st.dev.labels.tolist()
    const = constant_predictor(t, st.train.enc.labels.tolist(), labels)
    student = judge(t, labels, predict(model, st.dev, t, device).tolist())
    teacher = judge(t, labels, predict(st.teacher, st.dev, t, device).tolist())
    return {"rows": len(labels), "seed": seed, "metrics": list(t.metrics), "main": t.main, "regression": t.regression,
            "counts": dict(st.rows), "files": [list(f) for f in t.files], "constant": const, "student": student,
            "teacher": teacher,
            "warnings": warnings(t, const, student, teacher, cut=st.rows.get("train", 0) < st.rows.get("train_before_cut", 0))}


def _cells(check: dict[str, Any], m: dict[str, Any]) -> str:
    std = m["metrics"].get(f"{check['main']}_std")
    cells = [f"{100 * m['metrics'][k]:.2f}" + (f" ± {100 * std:.2f}" if k == check["main"] and std is not None else "")
             for k in check["metrics"]]
    return " | ".join(cells + ([f"{m['rmse']:.3f}"] if check["regression"] else []))


def data_line(check: dict[str, Any], *, markdown: bool = True) -> str:
    """How many rows trained, chose and scored the model (of how many, where a limit cut them):
    Markdown for the card, plain text for the log (``markdown=False``).

    >>> print(data_line({"counts": {"train": 200, "train_before_cut": 1300, "heldout": 200, "dev": 100,
    ...                             "dev_before_cut": 500}, "files": [["train", "/d/qnli_train.jsonl"]]}))
    **Trained on only 200 of 1,300 training rows** (max_train cut the rest: --max-train none keeps
    them all); 200 other training rows, never trained on, chose the checkpoint and the seed;
    **scored on only 100 of 500 dev rows** (max_dev cut the rest: --max-dev none keeps them all).
    Data: qnli\\_train.jsonl (training).
    >>> data_line({"counts": {"train": 9, "train_before_cut": 9, "heldout": 0, "dev": 4, "dev_before_cut": 4},
    ...            "files": [["train", "my_rows.csv"]]}, markdown=False)
    'Trained on 9 training rows; scored on 4 dev rows.  Data: my_rows.csv (training).'
    """
    c = check.get("counts") or {}
    if not c:
        return ""

    def part(n: int, before: int, what: str, verb: str, limit: str) -> str:
        if before <= n:
            return f"{verb} on {n:,} {what} rows"
        return (f"{b}{verb} on only {n:,} of {before:,} {what} rows{b} ({limit} cut the rest: "
                f"--{limit.replace('_', '-')} none keeps them all)")

    b, esc = ("**", md) if markdown else ("", str)
    files = ", ".join(f"{esc(Path(f).name)} ({'training' if s == 'train' else s})" for s, f in check.get("files") or [])
    return (part(c["train"], c["train_before_cut"], "training", "Trained", "max_train")
            + (f"; {c['heldout']:,} other training rows, never trained on, chose the checkpoint and the seed"
               if c.get("heldout") else "")
            + "; " + part(c["dev"], c["dev_before_cut"], "dev", "scored", "max_dev") + "."
            + (f"  Data: {files}." if files else ""))


def card_lines(check: dict[str, Any]) -> list[str]:
    """The card's "Better than guessing?" section from a ``check``."""
    cols = list(check["metrics"]) + (["RMSE"] if check["regression"] else [])
    const, student, teacher = check["constant"], check["student"], check.get("teacher")
    lines = ["## Data, and better than guessing?", "", data_line(check), "",
             f"On the {check['rows']:,} dev rows, beside the best predictor that never reads the text:", "",
             f"| predictor | {' | '.join(cols)} | predicts |", "|---" * (len(cols) + 2) + "|",
             f"| this student (seed {check['seed']}) | {_cells(check, student)} | {student['note']} |"]
    if teacher is not None:
        lines.append(f"| teacher | {_cells(check, teacher)} | {teacher['note']} |")
    lines += [f"| {md(const['what'])} | {_cells(check, const)} | |", ""]
    if check["warnings"]:
        lines += [f"**Warning: {md(w)}.**" for w in check["warnings"]]
    else:
        lines.append(f"The student and the teacher are better than {md(const['what'].split(' (')[0])} by more than "
                     f"{MARGIN:g} bootstrap stds.")
    return lines


def headline(check: dict[str, Any]) -> list[str]:
    """The warnings in short, for the top of the card (the section below has the numbers)."""
    if not check.get("warnings"):
        return []
    return [f"**Warning: {md('; '.join(w.split(' (')[0] for w in check['warnings']))}** (numbers: \"Data, and better "
            f"than guessing?\" below).", ""]
