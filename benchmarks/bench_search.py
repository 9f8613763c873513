"""Does the search find a better FFN?  Final-protocol re-training of a stored search's best student.

Takes stored runs of `exprsearch search --preset gpu` (the first is the evolution run; an optional
second is a random-search run with the same protocol).  Then
1. the best candidate of the first run at most the standard student's parameters, and the
   standard-FFN student, are re-trained with the final protocol of bench_fidelity.py (a full KD
   fine-tune, MRPC 600 x 32 ... SST-2 2000 x 32 training examples, dropout 0.1) over ``--seeds``
   seeds: mean +- std of each and of the difference;
2. evolution vs random at equal budget: the best stage-1 score of each run within the first N
   stage-1 candidates, N = the smaller run's count.
Writes benchmarks/results/bench_search.json.  The searches themselves are plain CLI runs, e.g.

    exprsearch search --preset gpu --store runs.db --data-dir GLUE --teacher MINILM
    exprsearch search --preset gpu --sampler random --stages 1 --candidates 150 --seed 1 --store runs.db ...
    PYTHONPATH=. python benchmarks/bench_search.py --store runs.db --runs EVO_RUN,RANDOM_RUN --data-dir GLUE --teacher MINILM
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

from _common import Log, device_name, write_json
from bench_fidelity import FINAL_STEPS, final_config

OUT = Path(__file__).parent / "results" / "bench_search.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--runs", required=True, help="EVOLUTION_RUN[,RANDOM_RUN] ('last' = the newest)")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--cache-dir", default="/tmp/exprsearch-cache")
    ap.add_argument("--final-steps", default=FINAL_STEPS)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    import torch

    from exprsearch.kd.evaluate import EvalConfig, Evaluator
    from exprsearch.lang.ops import STANDARD_FFN
    from exprsearch.lang.parsing import parse_spec
    from exprsearch.search.leaderboard import is_standard
    from exprsearch.search.search import Search
    from exprsearch.search.stats import mean_std
    from exprsearch.search.store import Store
    log = Log()
    store = Store(args.store)
    runs = [store.latest_run() if r == "last" else r for r in args.runs.split(",")]
    stored = store.run(runs[0])["config"]["eval"]
    ecfg = EvalConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()
                         if k in {f.name for f in fields(EvalConfig)}})
    ecfg = replace(ecfg, data_dir=args.data_dir, teacher=args.teacher, cache_dir=args.cache_dir)
    search = Search.resume(store, runs[0], log=lambda m: None, progress=False)
    standard = str(parse_spec(STANDARD_FFN).broadcast(ecfg.layers))
    budget = search.price(parse_spec(standard))[0]
    result = {"benchmark": "bench_search", "device": device_name(), "torch": torch.__version__, "runs": {},
              "budget_params": budget, "eval": asdict(ecfg), "log": log.lines}
    for run in runs:
        rows = store.candidates(run)
        ok = [r for r in rows if r["status"] == "ok"]
        cfg = store.run(run)["config"]["search"]
        result["runs"][run] = {"sampler": cfg["sampler"], "candidates": len(rows), "ok": len(ok),
                               "stage1": [r["score"] for r in rows if r["stage"] == 1 and r["status"] == "ok"],
                               "best": max(ok, key=lambda r: r["score"]) if ok else None}
    rows = [r for r in store.candidates(runs[0]) if r["status"] == "ok" and (r["params"] or 0) <= budget
            and not is_standard(r["spec"]) and "@" not in r["key"]]
    best = max(rows, key=lambda r: r["score"])
    log(f"best of {runs[0]} within {budget} parameters: {best['score']:.2f} {best['spec']}")

    # 1. final protocol, seeds
    final = final_config(ecfg, args.final_steps, group=2)
    ev = Evaluator(final, log=log)
    per_seed = []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        b, s = ev.evaluate_many([parse_spec(best["spec"]), parse_spec(standard)], seed=seed)
        per_seed.append({"seed": seed, "best": b.score, "standard": s.score, "best_metrics": b.metrics,
                         "standard_metrics": s.metrics, "seconds": time.perf_counter() - t0})
        log(f"final seed {seed}: best {b.score:.2f} standard {s.score:.2f}")
        write_json(args.out, result | {"final": per_seed})
    bm, bs = mean_std([p["best"] for p in per_seed])
    sm, ss = mean_std([p["standard"] for p in per_seed])
    dm, ds = mean_std([p["best"] - p["standard"] for p in per_seed])
    result["final"] = per_seed
    result["win"] = {"spec": best["spec"], "params": best["params"], "standard_params": budget,
                     "best_mean": bm, "best_std": bs, "standard_mean": sm, "standard_std": ss,
                     "diff_mean": dm, "diff_std": ds}
    log(f"final protocol, {args.seeds} seeds: best {bm:.2f} ± {bs:.2f}, standard {sm:.2f} ± {ss:.2f}, "
        f"difference {dm:+.2f} ± {ds:.2f}")

    # 2. evolution vs random at equal budget
    if len(runs) > 1:
        a, r = (result["runs"][x]["stage1"] for x in runs[:2])
        n = min(len(a), len(r))
        result["equal_budget"] = {"n": n, runs[0]: max(a[:n]), runs[1]: max(r[:n])}
        log(f"equal budget ({n} stage-1 candidates): {result['equal_budget']}")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
