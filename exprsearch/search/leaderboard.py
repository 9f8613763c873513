"""stored candidates --> leaderboard and Pareto front (quality vs parameters vs latency).

The front compares trained candidates only, and only on objectives both rows measured: a row
without a latency (a stage-3 row scored on the supernet, never trained or timed) is neither
better nor worse on latency than one with it, and supernet-scored rows are left out of it.
Latency is compared as measured: relative to the standard-FFN student timed beside each candidate
(``timing.paired_latency``), and only where two rows differ by more than their measured spreads
(at least ``LATENCY_FLOOR``) -- identical students tie, whatever load each met; a row with one
bare timing (a run stored before) has no comparable latency and is compared on the rest.

>>> def row(score, params, rel, spread=0.01):
...     return {"score": score, "params": params, "latency_ms": 10 * rel, "latency": {"rel": rel, "rel_spread": spread}}
>>> rows = [row(60, 10, 1.0), row(58, 12, 1.2), row(55, 8, 0.8)]
>>> [r["score"] for r in pareto(rows)]
[60, 55]
>>> [r["score"] for r in pareto(rows + [row(59, 10, 0.98)])]   # 2 % faster: within the floor, a tie
[60, 55]
>>> proxy = {"score": 73.0, "params": 10, "latency_ms": None, "worker": "supernet"}
>>> [r["score"] for r in pareto(rows + [proxy])]
[60, 55]
"""
from __future__ import annotations

import math
from typing import Any

from exprsearch.lang.display import table

__all__ = ["pareto", "leaderboard_table", "pareto_table", "score_std", "standard_row", "supernet_scored", "score_text",
           "scored_on", "latency_text", "LATENCY_FLOOR"]

LATENCY_FLOOR = 0.05  # relative latencies closer than 5 % of the standard FFN's never decide the front


def _latency(r: dict[str, Any]) -> tuple[float, float] | None:
    """(latency relative to the standard FFN timed alongside, its spread), or None: not measured so."""
    lat = r.get("latency") or {}
    return None if lat.get("rel") is None else (lat["rel"], lat.get("rel_spread") or 0.0)


def _faster(a: dict[str, Any], b: dict[str, Any]) -> int | None:
    """-1 if ``a`` is faster than ``b`` beyond both spreads (and the floor), 1 if slower, 0 if
    they tie, None if either has no comparable latency."""
    la, lb = _latency(a), _latency(b)
    if la is None or lb is None:
        return None
    diff = la[0] - lb[0]
    return 0 if abs(diff) <= max(la[1] + lb[1], LATENCY_FLOOR) else (-1 if diff < 0 else 1)


def _dominates(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...]) -> bool:
    """``a`` is at least as good as ``b`` on every objective both measured, better on one."""
    both = [k for k in keys if k != "latency" and a.get(k) is not None and b.get(k) is not None]
    fast = _faster(a, b) if "latency" in keys else None
    better = a["score"] >= b["score"] and all(a[k] <= b[k] for k in both) and (fast is None or fast <= 0)
    strictly = a["score"] > b["score"] or any(a[k] < b[k] for k in both) or fast == -1
    return better and strictly


def supernet_scored(r: dict[str, Any]) -> bool:
    """A stage-3 row ranked on the supernet (no training of its own): not comparable with trained rows."""
    return r.get("worker") == "supernet" or str(r.get("key", "")).endswith("@proxy")


def pareto(rows: list[dict[str, Any]], keys: tuple[str, ...] = ("params", "latency")) -> list[dict[str, Any]]:
    """Trained rows not dominated on (higher score, fewer params, lower latency beyond its
    spread), best score first."""
    ok = [r for r in rows if r.get("status", "ok") == "ok" and r.get("score") is not None and not supernet_scored(r)]
    keys = tuple(k for k in keys if any((_latency(r) if k == "latency" else r.get(k)) is not None for r in ok))
    front = [r for r in ok if not any(_dominates(o, r, keys) for o in ok if o is not r)]
    return sorted(front, key=lambda r: -r["score"])


def scored_on(r: dict[str, Any]) -> str:
    """Each task's main metric and the rows it was read from (held-out, or dev in older runs)."""
    from exprsearch.rows.glue import scored_metric
    out = []
    for t, m in (r.get("metrics") or {}).items():
        try:
            split, value, _ = scored_metric(t, m)
            out.append(f"{t} {split} {100 * value:.1f}")
        except Exception:  # noqa: BLE001 - metrics of an unknown task are shown raw
            out.append(f"{t} {m}")
    return ", ".join(out)


def score_std(r: dict[str, Any]) -> float | None:
    """The bootstrap standard deviation of a row's score (points), from its tasks' main-metric std
    on the rows the score was read from (independent row sets: variances add, then the mean
    divides); None if a task has none.

    >>> round(score_std({"metrics": {"SST-2": {"acc": 0.8, "acc_std": 0.013}, "RTE": {"acc": 0.6, "acc_std": 0.03}}}), 2)
    1.63
    >>> score_std({"metrics": {"SST-2": {"heldout_acc": 0.8, "heldout_acc_std": 0.02, "score": 0.8}}})
    2.0
    """
    from exprsearch.rows.glue import scored_metric
    ms = r.get("metrics") or {}
    try:
        stds = [scored_metric(t, m)[2] for t, m in ms.items()]
    except (KeyError, ValueError, TypeError):
        return None
    known = [s for s in stds if s is not None]
    if not stds or len(known) < len(stds):
        return None
    return 100 * math.sqrt(sum(s ** 2 for s in known)) / len(known)


def standard_row(r: dict[str, Any]) -> bool:
    """Is this stored row its run's baseline: the width-matched standard FFN (marked by the search
    when it stored the row; in a run stored before the mark, the full-width standard FFN)?

    >>> standard_row({"spec": "[linear1_2(gelu(linear1_2(x,wb1)),wb2)]", "config": {"baseline": True}})
    True
    >>> standard_row({"spec": "[linear1_1(gelu(linear1_1(x,wb1)),wb2)]", "config": {"baseline": False}})
    False
    """
    from exprsearch.lang.standard import is_standard

    from .store import row_spec
    cfg = r.get("config")
    if isinstance(cfg, dict) and "baseline" in cfg:
        return bool(cfg["baseline"])
    spec = row_spec(r["spec"])
    return spec is not None and is_standard(spec)


def score_text(r: dict[str, Any]) -> str:
    """Score ± bootstrap std; a row re-scored over several seeds says so, with their std.

    >>> score_text({"score": 61.0, "metrics": {}, "seed_scores": [60.0, 62.0], "seed_std": 1.41})
    '61.00 (2 seeds ± 1.41)'
    """
    sd = score_std(r)
    out = f"{r['score']:.2f}" + ("" if sd is None else f" ± {sd:.2f}")
    return out + (f" ({len(r['seed_scores'])} seeds ± {r['seed_std']:.2f})" if r.get("seed_scores") else "")


def _row(i: int | str, r: dict[str, Any]) -> list[Any]:
    spec = r["spec"] if len(r["spec"]) <= 60 else r["spec"][:57] + "..."
    ffn = r.get("ffn_params")
    return [i, score_text(r), scored_on(r), f"{(r.get('params') or 0) / 1e6:.2f}M",
            "-" if ffn is None else f"{ffn / 1e6:.2f}M",
            f"{(r.get('flops') or 0) / 1e6:.1f}M", latency_text(r),
            r.get("stage"), ("standard FFN: " if standard_row(r) else "") + spec]


def latency_text(r: dict[str, Any]) -> str | None:
    """A row's latency: median ms ± spread, and relative to the standard FFN timed alongside.

    >>> latency_text({"latency_ms": 12.3, "latency": {"ms": 12.3, "spread_ms": 0.4, "rel": 0.98, "rel_spread": 0.02}})
    '12.3 ± 0.4 (0.98 ± 0.02 x std)'
    >>> latency_text({"latency_ms": 19.0}), latency_text({})
    ('19.0', None)
    """
    if r.get("latency_ms") is None:
        return None
    lat = r.get("latency") or {}
    text = f"{r['latency_ms']:.1f}" + (f" ± {lat['spread_ms']:.1f}" if lat.get("spread_ms") is not None else "")
    if lat.get("rel") is None:
        return text
    return text + f" ({lat['rel']:.2f} ± {lat.get('rel_spread') or 0:.2f} x std)"


_HEAD = ["#", "score ± boot. std (seeds)", "scored on (main metric)", "params", "FFN params", "FLOPs/tok",
         "ms (x standard FFN)", "stage", "spec"]


def _ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((r for r in rows if r.get("status") == "ok" and r.get("score") is not None), key=lambda r: -r["score"])


def leaderboard_table(rows: list[dict[str, Any]], top: int = 10) -> str:
    """The ``top`` rows by score (± the bootstrap std over the rows it was read from), the
    baseline's row (the width-matched standard FFN) always shown, and how far the best row is
    from it, with both rows' FFN parameters side by side."""
    ok = _ranked(rows)
    shown = [_row(i + 1, r) for i, r in enumerate(ok[:top])]
    std = next(((i, r) for i, r in enumerate(ok) if standard_row(r)), None)
    if std is not None and std[0] >= top:
        shown.append(_row(std[0] + 1, std[1]))
    out = table(shown, _HEAD)
    if std is not None and len(ok) > 1:
        base = std[1]
        other = ok[0] if ok[0] is not base else ok[1]
        a, b = score_std(other), score_std(base)
        noise = "" if a is None or b is None else f" ± {math.hypot(a, b):.2f}"
        what = "best" if other is ok[0] else "runner-up"
        out += (f"\n{what} - standard FFN: {other['score'] - base['score']:+.2f}{noise} points "
                f"(standard FFN ranks {std[0] + 1} of {len(ok)}; FFN params {_mparams(other)} vs {_mparams(base)})")
    return out


def _mparams(r: dict[str, Any]) -> str:
    return "-" if r.get("ffn_params") is None else f"{r['ffn_params'] / 1e6:.3f}M"


def pareto_table(rows: list[dict[str, Any]]) -> str:
    return table([_row(i + 1, r) for i, r in enumerate(pareto(rows))], _HEAD)
