"""A gpu-preset search vs random search at equal budget, and vs the standard-FFN student.

Runs stage 1 twice with the same evaluation protocol and budget: once with the evolution sampler
(seeded with the standard FFN, as the reference does) and once with random search; every
candidate is limited to at most the standard student's parameters.  Writes
benchmarks/results/bench_search.json and a store file.

    PYTHONPATH=. python benchmarks/bench_search.py --data-dir DIR --teacher DIR --candidates 12
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--candidates", type=int, default=12)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--samplers", default="evolution,random")
    ap.add_argument("--store", default="/tmp/bench_search.db")
    ap.add_argument("--cache-dir", default="/tmp/exprsearch-cache")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_search.json"))
    args = ap.parse_args()
    import torch
    from exprsearch.cli_search import SEARCH_PRESETS
    from exprsearch.evaluate import STANDARD_SPEC, EvalConfig
    from exprsearch.parsing import parse_spec
    from exprsearch.search import Search, SearchConfig
    from exprsearch.store import Store
    s_preset, e_preset = SEARCH_PRESETS["gpu"]
    ecfg = EvalConfig(**e_preset, data_dir=args.data_dir, teacher=args.teacher, cache_dir=args.cache_dir)
    store = Store(args.store)
    out = {"benchmark": "bench_search", "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
           "eval": asdict(ecfg), "runs": {}}
    budget = None
    for name in args.samplers.split(","):
        scfg = SearchConfig(**{**s_preset, "workers": args.workers, "sampler": name, "candidates": args.candidates,
                               "stages": "1", "seed_standard": name == "evolution",
                               "population": max(4, args.candidates // 2), "tournament": 3,
                               "seed": 0 if name == "evolution" else 1})
        search = Search(store, scfg, ecfg, log=lambda m: print(m, flush=True))
        if budget is None:  # at most the standard student's parameters
            budget = search.price(parse_spec(STANDARD_SPEC).broadcast(ecfg.layers))[0]
        search.scfg = replace(scfg, budget_params=str(budget))
        search.budget_params = float(budget)
        t = time.perf_counter()
        summary = search.run()
        wall = time.perf_counter() - t
        rows = store.candidates(search.run_id)
        ok = [r for r in rows if r["status"] == "ok"]
        std = [r for r in ok if r["spec"] == str(parse_spec(STANDARD_SPEC).broadcast(ecfg.layers))]
        out["runs"][name] = {"run_id": search.run_id, "wall_s": wall, "stats": summary["stats"],
                             "candidates_per_hour": 3600 * summary["stats"]["evaluated"] / wall,
                             "best": summary["best"], "standard": std[0] if std else None,
                             "scores": [(r["spec"], r["score"], r["params"]) for r in ok]}
        print(f"{name}: best {summary['best']['score'] if summary['best'] else None} in {wall:.0f}s", flush=True)
    store.close()
    out["budget_params"] = budget
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str) + "\n")
    for name, r in out["runs"].items():
        print(name, r["stats"], f"{r['candidates_per_hour']:.0f}/h", "best", r["best"]["score"] if r["best"] else None,
              r["best"]["spec"] if r["best"] else "", "standard", r["standard"]["score"] if r["standard"] else None)


if __name__ == "__main__":
    main()
