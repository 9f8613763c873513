"""The reported comparison of the evidence protocol (issue 28), shared by bench_search and bench_bias.

Members (name, spec) are re-trained together with the final protocol (``kd/final.py``: a full KD
fine-tune, at least ``min_steps`` steps and ``min_evals`` evaluations, the best checkpoint chosen
on held-out training rows) on **fresh seeds** (``kd.final.fresh_seeds``: never a seed the search
or its re-ranks trained with), and on the first ``check`` of those seeds once more with ``scale`` x
the steps (the convergence check).  Every pass -- each member's held-out curve, best step and dev
metrics per task -- is written to the result as it ends, so a cut-off run resumes where it
stopped (``--deadline`` for 10-minute device calls).  ``summarise`` reports per member the dev
score over seeds (mean ± std), its difference to the baseline paired by seed with a 90 %
t-interval, and whether every task converged.

>>> result = {"finals": {"x1/7": {"seed": 7, "scale": 1.0, "runs": {
...     "a": {"SST-2": {"spec": "a", "seed": 7, "status": "ok", "dev": {"acc": 0.8}, "heldout": 0.82,
...                     "heldout_std": 0.01, "best_step": 10, "steps": 20, "curve": [[10, 0.82], [20, 0.8]]}},
...     "base": {"SST-2": {"spec": "b", "seed": 7, "status": "ok", "dev": {"acc": 0.79}, "heldout": 0.8,
...                        "heldout_std": 0.01, "best_step": 20, "steps": 20, "curve": [[10, 0.7], [20, 0.8]]}}}}}}
>>> s = summarise(result, ["a", "base"], "base", ["SST-2"])
>>> round(s["a"]["dev_mean"], 2), s["a"]["converged"], s["base"]["converged"], s["a"]["paired"]
(80.0, False, False, None)
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

from _common import device_name

__all__ = ["run_finals", "summarise", "dev_score", "LONGER"]

LONGER = 1.5  # the convergence check's run: this many times the steps


def _passes(seeds: list[int], check: int) -> list[tuple[float, int]]:
    return [(1.0, s) for s in seeds] + [(LONGER, s) for s in seeds[:check]]


def run_finals(ev: Any, members: list[tuple[str, Any]], fcfg: Any, seeds: list[int], check: int,
               result: dict[str, Any], save: Callable[[], None], log: Callable[[str], None],
               deadline: float = 0.0, t0: float | None = None) -> bool:
    """Train ``members`` together per (scale, seed) pass not yet in ``result["finals"]``; False
    when ``deadline`` seconds after ``t0`` would pass before the next pass ends."""
    from exprsearch.kd.final import finetune
    t0 = time.perf_counter() if t0 is None else t0
    finals = result.setdefault("finals", {})
    result["final_seeds"], result["check_seeds"], result["longer"] = seeds, seeds[:check], LONGER
    specs = [spec for _, spec in members]
    for scale, seed in _passes(seeds, check):
        key = f"x{scale:g}/{seed}"
        if key in finals:
            continue
        took = max([p["seconds"] for p in finals.values() if p["scale"] == scale] or [0.0])
        if deadline and time.perf_counter() - t0 + took > deadline:
            log(f"stopping before final pass {key}: it would end after the deadline ({deadline:.0f}s)")
            return False
        t = time.perf_counter()
        cfg = dataclasses.replace(fcfg, scale=scale)
        runs: dict[str, dict[str, Any]] = {name: {} for name, _ in members}
        for task in ev.state:
            for (name, _), r in zip(members, finetune(ev, specs, task, seed, cfg, keep_models=False)):
                runs[name][task] = r.as_dict()
        finals[key] = {"seed": seed, "scale": scale, "seconds": time.perf_counter() - t, "device": device_name(),
                       "runs": runs}
        save()
        log(f"final pass {key}: {finals[key]['seconds']:.0f}s " + ", ".join(
            f"{n} " + "/".join(f"{100 * r['dev'].get(_main(t_), float('nan')):.1f}@{r['best_step']}"
                               for t_, r in rs.items()) for n, rs in runs.items()))
    return True


def _main(task_name: str) -> str:
    from exprsearch.rows.glue import task
    return task(task_name).main


def _run(d: dict[str, Any]) -> Any:
    from exprsearch.kd.final import FinalRun
    names = {f.name for f in dataclasses.fields(FinalRun)}
    run = FinalRun(**{k: v for k, v in d.items() if k in names})
    run.curve = [tuple(p) for p in run.curve]
    return run


def dev_score(p: dict[str, Any], name: str, tasks: list[str]) -> float | None:
    """A member's dev score in one pass: the mean of the tasks' main metrics x 100 (None if a task failed)."""
    rs = [p["runs"][name][t] for t in tasks]
    return None if any(r["status"] != "ok" for r in rs) else \
        100 * sum(r["dev"][_main(t)] for t, r in zip(tasks, rs)) / len(tasks)


def summarise(result: dict[str, Any], names: list[str], baseline: str, tasks: list[str]) -> dict[str, Any]:
    """Per member: dev score (mean of the tasks' main metrics x 100) per seed, mean ± std, held-out
    best likewise, the paired difference to ``baseline`` with a 90 % t-interval (None under two
    seeds), and per task whether it converged (``kd.final.convergence``)."""
    from exprsearch.kd.final import convergence
    from exprsearch.search.stats import mean_std, paired_interval
    passes = result.get("finals", {}).values()
    normal = sorted((p for p in passes if p["scale"] == 1.0), key=lambda p: p["seed"])
    longer = [p for p in passes if p["scale"] != 1.0]

    out: dict[str, Any] = {}
    for name in names:
        scores = {p["seed"]: dev_score(p, name, tasks) for p in normal}
        ok = [s for s in scores.values() if s is not None]
        held = [100 * sum(p["runs"][name][t]["heldout"] for t in tasks) / len(tasks) for p in normal
                if all(p["runs"][name][t]["status"] == "ok" for t in tasks)]
        conv = {t: convergence([_run(p["runs"][name][t]) for p in normal], [_run(p["runs"][name][t]) for p in longer])
                for t in tasks}
        entry = {"seeds": sorted(scores), "dev_scores": [scores[s] for s in sorted(scores)],
                 "dev_mean": mean_std(ok)[0] if ok else None, "dev_std": mean_std(ok)[1] if ok else None,
                 "heldout_mean": mean_std(held)[0] if held else None, "convergence": conv,
                 "converged": all(c["converged"] for c in conv.values()), "paired": None}
        if name != baseline:
            pairs = [(scores[s], b) for s in scores
                     if scores[s] is not None and (b := dev_score(next(p for p in normal if p["seed"] == s), baseline, tasks))
                     is not None]
            if len(pairs) > 1:
                entry["paired"] = paired_interval([a for a, _ in pairs], [b for _, b in pairs])
                iv = entry["paired"]
                entry["verdict"] = ("win" if iv["low"] > 0 else "loss" if iv["high"] < 0 else "tie (inside the noise)")
        out[name] = entry
    return out
