"""Does the search find a better FFN?  Final-protocol re-training of a stored search's best students.

Takes stored runs of `exprsearch search --preset gpu` (the first is the evolution run; an optional
second is a random-search run with the same protocol, in the same or another store).  Then
1. the best candidate of the first run at most the standard student's parameters (by the search's
   own proxy score), its next ``--top``-1 runners-up, the random run's best, and the standard-FFN
   student (the run's own: the width-matched one under an FFN budget) are re-trained together with
   the final protocol over ``--seeds`` seeds -- ``--protocol converged`` (default): kd/final.py, a
   full KD fine-tune of ``--final-epochs`` epochs whose best checkpoint is chosen on held-out
   training rows every 50 steps; ``--protocol steps``: bench_fidelity.py's fixed step counts --:
   mean +- std of each and of its difference to the standard FFN, paired by seed, with a 90 %
   t-interval;
2. evolution vs random at equal budget: the best, mean and top-10 mean stage-1 proxy score of each run within the first N
   stage-1 candidates, N = the smaller run's count, and (from 1) the two bests' final scores.
Writes benchmarks/results/bench_search.json after every seed.  The searches are plain CLI runs, e.g.

    exprsearch search --preset gpu --store evo.db --data-dir GLUE --teacher MINILM
    exprsearch search --preset gpu --sampler random --stages 1 --candidates 100 --seed 1 --store rnd.db ...
    PYTHONPATH=. python benchmarks/bench_search.py --store evo.db --runs last,rnd.db:last --data-dir GLUE --teacher MINILM

A run is ``RUN``, ``last`` (the store's newest) or ``STORE:RUN`` / ``STORE:last`` for another store.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from _common import Log, device_name, write_json
from bench_fidelity import FINAL_STEPS, final_config

OUT = Path(__file__).parent / "results" / "bench_search.json"


def open_run(ref: str, default_store: str) -> tuple[Any, str]:
    """``[STORE:]RUN`` --> (Store, run id); ``last`` is the store's newest run."""
    from exprsearch.search.store import Store
    path, _, run = ref.rpartition(":")
    store = Store(path or default_store, readonly=True)
    return store, (store.latest_run() if run == "last" else run)


def eligible(rows: list[dict[str, Any]], budget: Any) -> list[dict[str, Any]]:
    """Successful, per-candidate-trained rows (no stage-3 supernet scores) within the parameter
    budget, not the standard FFN itself, best proxy score first."""
    from exprsearch.search.leaderboard import standard_row
    fits = budget if callable(budget) else (lambda r: (r["params"] or 0) <= budget)  # a predicate, or a total
    ok = [r for r in rows if r["status"] == "ok" and fits(r)
          and not standard_row(r) and "@" not in r["key"]]
    return sorted(ok, key=lambda r: -r["score"])


def top_mean(xs: list[float], k: int = 10) -> float:
    """Mean of the ``k`` best scores: a steadier 'what did the sampler find' than the single best.

    >>> top_mean([1.0, 5.0, 3.0, 4.0], k=2)
    4.5
    """
    best = sorted(xs, reverse=True)[:k]
    return sum(best) / len(best)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True, help="the store of runs given without STORE:")
    ap.add_argument("--runs", required=True, help="EVOLUTION_RUN[,RANDOM_RUN], each [STORE:]RUN or 'last'")
    ap.add_argument("--data-dir", default=None, help="GLUE folder (default: the run's own)")
    ap.add_argument("--teacher", default=None, help="teacher folder (default: the run's own)")
    ap.add_argument("--cache-dir", default="/tmp/exprsearch-cache")
    ap.add_argument("--final-steps", default=FINAL_STEPS, help="--protocol steps: KD steps per task")
    ap.add_argument("--protocol", choices=("converged", "steps"), default="converged")
    ap.add_argument("--final-epochs", default="MRPC=5,RTE=5,CoLA=5,SST-2=3", help="--protocol converged: epochs per task")
    ap.add_argument("--heldout-rows", type=int, default=2000, help="--protocol converged: rows choosing the checkpoint")
    ap.add_argument("--seeds", type=int, default=3, help="final-protocol seeds (0: only summarise the runs)")
    ap.add_argument("--top", type=int, default=3, help="evolution-run candidates re-trained (best first)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    import torch

    from exprsearch.kd.evaluate import EvalConfig, Evaluator
    from exprsearch.lang.parsing import parse_spec
    from exprsearch.lang.standard import STANDARD_SPEC
    from exprsearch.search.search import Search
    from exprsearch.kd.final import FinalConfig, finetune
    from exprsearch.kd.glue import score
    from exprsearch.search.stats import mean_std, paired_interval
    log = Log()
    runs = [open_run(r, args.store) for r in args.runs.split(",")]
    store, run = runs[0]
    stored = store.run(run)["config"]["eval"]
    ecfg = EvalConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()
                         if k in {f.name for f in fields(EvalConfig)}})
    ecfg = replace(ecfg, data_dir=args.data_dir or ecfg.data_dir, teacher=args.teacher or ecfg.teacher,
                   cache_dir=args.cache_dir)
    search = Search.resume(store, run, log=lambda m: None, progress=False)
    standard = str(search.standard())  # the width-matched standard FFN under an FFN budget
    budget = search.budget_params if search.budget_params is not None else \
        search.price(STANDARD_SPEC.broadcast(ecfg.layers))[0]
    result: dict[str, Any] = {"benchmark": "bench_search", "device": device_name(), "torch": torch.__version__,
                              "runs": {}, "budget_params": budget, "eval": asdict(ecfg), "log": log.lines}
    best_of: dict[str, list[dict[str, Any]]] = {}
    for st, r in runs:
        rows = st.candidates(r, seeds=False)  # first-seed scores: runs with and without re-ranking compare alike
        if st.run(r)["config"]["eval"] != stored:
            log(f"warning: run {r} was evaluated with another protocol than {run}")
        cfg = st.run(r)["config"]["search"]
        best_of[r] = [row for row in eligible(st.candidates(r), lambda row: not search.over_budget(
            parse_spec(row["spec"], strict=False))) if row["spec"] != standard]
        result["runs"][r] = {"sampler": cfg["sampler"], "candidates": len(rows),
                             "ok": sum(x["status"] == "ok" for x in rows), "status": st.run(r)["status"],
                             "per_stage": {s: sum(x["stage"] == s for x in rows) for s in (1, 2, 3)},
                             "stage1": [x["score"] for x in rows if x["stage"] == 1 and x["status"] == "ok"],
                             "best": best_of[r][0] if best_of[r] else None}
    # evolution vs random at equal budget (first, so that even a cut-off run's JSON has it)
    if len(runs) > 1:
        a, r = (result["runs"][x[1]]["stage1"] for x in runs[:2])
        n = min(len(a), len(r))
        result["equal_budget"] = {"n": n, "evolution_best_proxy": max(a[:n]), "random_best_proxy": max(r[:n]),
                                  "evolution_mean_proxy": mean_std(a[:n])[0], "random_mean_proxy": mean_std(r[:n])[0],
                                  "evolution_top10_proxy": top_mean(a[:n]), "random_top10_proxy": top_mean(r[:n])}
        log(f"equal budget ({n} stage-1 candidates): {result['equal_budget']}")
        write_json(args.out, result)
    members = [(f"evolution#{i + 1}", row["spec"], row) for i, row in enumerate(best_of[run][:args.top])]
    if len(runs) > 1 and best_of[runs[1][1]]:
        rnd = best_of[runs[1][1]][0]
        same = [name for name, spec, _ in members if spec == rnd["spec"]]
        if same:  # both samplers start from the same seeded random population
            log(f"random#1 is {same[0]}: trained once")
            result["random_is"] = same[0]
        else:
            members.append(("random#1", rnd["spec"], rnd))
    members.append(("standard", standard, None))
    result["members"] = [{"name": name, "spec": spec, "proxy": row["score"] if row else None,
                          "params": row["params"] if row else budget} for name, spec, row in members]
    for name, spec, row in members:
        log(f"{name}: proxy {row['score']:.2f}, {row['params']} params  {spec}" if row else f"{name}: {spec}")

    if args.seeds <= 0:  # the runs' summary and the members, no re-training
        result["device"] = None
        write_json(args.out, result)
        return
    # final protocol, seeds: every member trained in one group per seed
    specs = [parse_spec(spec, strict=False) for _, spec, _ in members]
    if args.protocol == "steps":
        ev = Evaluator(final_config(ecfg, args.final_steps, group=len(members)), log=log)
    else:
        ev = Evaluator(replace(ecfg, heldout_rows=args.heldout_rows, score_on="dev", group=len(members),
                               hurdles=()), log=log)
        fcfg = FinalConfig(epochs=1.0, task_epochs=args.final_epochs, eval_every=50, dropout=0.1)
    result["protocol"] = args.protocol
    per_seed = []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        if args.protocol == "steps":
            res = ev.evaluate_many(specs, seed=seed)
            scores = {name: r.score for (name, _, _), r in zip(members, res)}
            metrics = {name: r.metrics for (name, _, _), r in zip(members, res)}
        else:
            runs = {t: finetune(ev, specs, t, seed, fcfg, keep_models=False) for t in ev.state}
            metrics = {name: {t: runs[t][i].dev for t in ev.state} for i, (name, _, _) in enumerate(members)}
            scores = {name: (score(metrics[name], ev.tasks) if all(runs[t][i].status == "ok" for t in ev.state)
                             else None) for i, (name, _, _) in enumerate(members)}
        per_seed.append({"seed": seed, "seconds": time.perf_counter() - t0, "scores": scores, "metrics": metrics})
        log(f"final seed {seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in per_seed[-1]["scores"].items()))
        result["final"] = per_seed
        write_json(args.out, result)
    summary = {}
    for name, spec, row in members:
        paired = [p for p in per_seed if p["scores"][name] is not None and p["scores"]["standard"] is not None]
        xs = [p["scores"][name] for p in paired]
        diffs = [p["scores"][name] - p["scores"]["standard"] for p in paired]
        summary[name] = {"spec": spec, "params": row["params"] if row else budget,
                         "proxy": row["score"] if row else None, "final_mean": mean_std(xs)[0],
                         "final_std": mean_std(xs)[1], "diff_mean": mean_std(diffs)[0], "diff_std": mean_std(diffs)[1],
                         "diff_90": paired_interval(xs, [p["scores"]["standard"] for p in paired])
                         if len(paired) > 1 else None}
        log(f"final protocol, {args.seeds} seeds: {name:13s} {summary[name]['final_mean']:.2f} ± "
            f"{summary[name]['final_std']:.2f}  vs standard {summary[name]['diff_mean']:+.2f} ± "
            f"{summary[name]['diff_std']:.2f}")
    result["summary"] = summary
    result["win"] = summary[members[0][0]] | {"standard_params": budget}

    write_json(args.out, result)


if __name__ == "__main__":
    main()
