"""a stored row as SQLite gives it --> the row with the types every reader expects.

Input: a row of the store as a dict (its JSON columns decoded by ``store._decode``).  Output: the
same dict where every value has its column's type -- numbers finite (int or float), texts ``str``,
metrics ``{task: {name: finite number}}`` -- and each column that had to be emptied named in the
row's ``damaged`` list; a successful row whose score or metrics were damaged reads as failed.  SQLite lets any value into any column (text in ``score``, ``NaN`` in a
metrics document), and a reader that trusts the types stops with a TypeError; a damaged value
reads as missing instead.  The file keeps its text.

>>> r = typed({"key": "[x]", "status": "ok", "score": "high", "params": 10,
...            "metrics": {"RTE": {"acc": float("nan"), "f1": 0.5}}})
>>> r["score"], r["params"], r["metrics"], r["damaged"], r["status"]
(None, 10, {'RTE': {'f1': 0.5}}, ['score', 'metrics'], 'failed')
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["typed", "NUMBERS", "TEXTS"]

NUMBERS = ("score", "params", "ffn_params", "flops", "latency_ms", "seconds", "stage", "seq", "created",
           "updated", "std", "seed")
TEXTS = ("run_id", "key", "spec", "status", "reason", "eval_hash", "code_version", "worker", "notes", "task", "dir",
         "policy")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def typed(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with wrong-typed values emptied and named in ``d["damaged"]`` (see the module docstring)."""
    bad: list[str] = []
    for k in NUMBERS:
        if d.get(k) is not None and not _number(d[k]):
            d[k] = None
            bad.append(k)
    for k in TEXTS:
        if d.get(k) is not None and not isinstance(d[k], str):
            d[k] = str(d[k])  # a number where a text belongs: kept readable
            bad.append(k)
    metrics = d.get("metrics")
    if isinstance(metrics, dict):
        clean = {t: {n: v for n, v in m.items() if _number(v)} for t, m in metrics.items() if isinstance(m, dict)}
        if clean != metrics:
            d["metrics"] = clean
            bad.append("metrics")
    if bad:
        d["damaged"] = [*d.get("damaged", []), *bad]
        if d.get("status") == "ok" and {"score", "metrics"} & set(bad):  # it cannot be ranked: a failed row
            d["status"], d["reason"] = "failed", f"damaged in the store: {', '.join(bad)}"
    return d
