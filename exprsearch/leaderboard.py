"""stored candidates --> leaderboard and Pareto front (quality vs parameters vs latency).

>>> rows = [{"score": 60, "params": 10, "latency_ms": 5}, {"score": 58, "params": 12, "latency_ms": 6},
...         {"score": 55, "params": 8, "latency_ms": 4}]
>>> [r["score"] for r in pareto(rows)]
[60, 55]
"""
from __future__ import annotations

from typing import Any

from .display import table

__all__ = ["pareto", "leaderboard_table", "pareto_table"]


def _dominates(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...]) -> bool:
    better = a["score"] >= b["score"] and all((a.get(k) or 0) <= (b.get(k) or 0) for k in keys)
    strictly = a["score"] > b["score"] or any((a.get(k) or 0) < (b.get(k) or 0) for k in keys)
    return better and strictly


def pareto(rows: list[dict[str, Any]], keys: tuple[str, ...] = ("params", "latency_ms")) -> list[dict[str, Any]]:
    """Rows not dominated on (higher score, fewer params, lower latency), best score first."""
    ok = [r for r in rows if r.get("status", "ok") == "ok" and r.get("score") is not None]
    keys = tuple(k for k in keys if any(r.get(k) is not None for r in ok))
    front = [r for r in ok if not any(_dominates(o, r, keys) for o in ok if o is not r)]
    return sorted(front, key=lambda r: -r["score"])


def _main_metrics(r: dict[str, Any]) -> str:
    from .glue import task
    out = []
    for t, m in (r.get("metrics") or {}).items():
        try:
            out.append(f"{t} {100 * m[task(t).main]:.1f}")
        except Exception:  # noqa: BLE001 - metrics of an unknown task are shown raw
            out.append(f"{t} {m}")
    return ", ".join(out)


def _row(i: int, r: dict[str, Any]) -> list[Any]:
    spec = r["spec"] if len(r["spec"]) <= 60 else r["spec"][:57] + "..."
    return [i, round(r["score"], 2), _main_metrics(r), f"{(r.get('params') or 0) / 1e6:.2f}M",
            f"{(r.get('flops') or 0) / 1e6:.1f}M", None if r.get("latency_ms") is None else f"{r['latency_ms']:.1f}",
            r.get("stage"), spec]


_HEAD = ["#", "score", "dev (main metric)", "params", "FLOPs/tok", "ms", "stage", "spec"]


def leaderboard_table(rows: list[dict[str, Any]], top: int = 10) -> str:
    ok = sorted((r for r in rows if r.get("status") == "ok" and r.get("score") is not None), key=lambda r: -r["score"])
    return table([_row(i + 1, r) for i, r in enumerate(ok[:top])], _HEAD)


def pareto_table(rows: list[dict[str, Any]]) -> str:
    return table([_row(i + 1, r) for i, r in enumerate(pareto(rows))], _HEAD)
