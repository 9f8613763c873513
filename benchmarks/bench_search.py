"""Does the search find a better FFN?  The evidence protocol's answer for stored search runs (issue 28).

Takes stored runs of `exprsearch search` (the first is the run under test, e.g. evolution; an
optional second is a random-search run of the same protocol, in the same or another store).  Then
1. the run's best candidate within its budget (by the search's own held-out score; re-ranked rows
   by their seed mean), its next ``--top``-1 runners-up, the random run's best and the run's
   **baseline** -- the width-matched standard FFN the search evaluated (under an FFN budget the
   standard FFN at exactly the budget) -- are re-trained together with the final protocol
   (``kd/final.py``: ``--final-epochs`` per task, at least 300 steps and 6 evaluations, the best
   checkpoint on the run's own held-out rows; the teachers and warm supernets are the run's) on
   ``--seeds`` **fresh** seeds (never the search's or its re-ranks'), plus a 1.5x longer run on
   ``--check-seeds`` of them (the convergence check); reported: each member's dev score mean ±
   std, its difference to the baseline paired by seed with a 90 % t-interval ("win" only when the
   interval is above zero), both arms' FFN parameters, and per task whether it converged;
2. sampler vs random at equal budget: the best, mean and top-10 mean stage-1 held-out score of
   each run within the first N stage-1 candidates (N = the smaller run's count).
Writes the JSON after every pass; ``--resume`` continues it, ``--deadline S`` stops before a pass
that would end later.  A run is ``RUN``, ``last`` (the store's newest) or ``STORE:RUN``:

    exprsearch search --preset quick --base-width 1536 --budget-params ffn:50% --gates --store s.db
    PYTHONPATH=. python benchmarks/bench_search.py --store s.db --runs last --seeds 5 --out result.json
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from _common import Log, device_name, write_json
from _final import run_finals, summarise

OUT = Path(__file__).parent / "results" / "bench_search.json"


def open_run(ref: str, default_store: str) -> tuple[Any, str]:
    """``[STORE:]RUN`` --> (Store, run id); ``last`` is the store's newest run."""
    from exprsearch.search.store import Store
    path, _, run = ref.rpartition(":")
    store = Store(path or default_store, readonly=True)
    return store, (store.latest_run() if run == "last" else run)


def eligible(rows: list[dict[str, Any]], budget: Any) -> list[dict[str, Any]]:
    """Successful, per-candidate-trained rows (no stage-3 supernet scores) within the parameter
    budget, not the run's baseline itself, best proxy score first."""
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
    ap.add_argument("--runs", required=True, help="RUN[,RANDOM_RUN], each [STORE:]RUN or 'last'")
    ap.add_argument("--data-dir", default=None, help="GLUE folder (default: the run's own)")
    ap.add_argument("--teacher", default=None, help="teacher folder (default: the run's own)")
    ap.add_argument("--cache-dir", default=None, help="cache folder (default: the run's own)")
    ap.add_argument("--final-epochs", default="MRPC=5,RTE=5,CoLA=5,SST-2=3", help="final protocol epochs per task")
    ap.add_argument("--epochs", type=float, default=3.0, help="final protocol epochs of other tasks")
    ap.add_argument("--seeds", type=int, default=5, help="fresh final-protocol seeds (0: only summarise the runs)")
    ap.add_argument("--check-seeds", type=int, default=2, help="seeds also run 1.5x longer (convergence check)")
    ap.add_argument("--top", type=int, default=1, help="candidates of the first run re-trained (best first)")
    ap.add_argument("--deadline", type=float, default=0, help="seconds: start no pass that would end later (0: none)")
    ap.add_argument("--resume", action="store_true", help="continue --out's passes")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    t0 = time.perf_counter()
    import torch

    from exprsearch.kd.evaluate import EvalConfig, Evaluator
    from exprsearch.kd.final import FinalConfig, fresh_seeds
    from exprsearch.lang.parsing import parse_spec
    from exprsearch.search.search import Search
    from exprsearch.search.stats import mean_std
    log = Log()
    runs = [open_run(r, args.store) for r in args.runs.split(",")]
    store, run = runs[0]
    config = store.run(run)["config"]
    stored = config["eval"]
    ecfg = EvalConfig.from_stored(stored)
    ecfg = replace(ecfg, data_dir=args.data_dir or ecfg.data_dir, teacher=args.teacher or ecfg.teacher,
                   cache_dir=args.cache_dir or ecfg.cache_dir)
    search = Search.resume(store, run, log=lambda m: None, progress=False)
    standard = search.standard()  # the run's baseline: the width-matched standard FFN
    out = Path(args.out)
    old = json.loads(out.read_text()) if args.resume and out.exists() else {}
    result: dict[str, Any] = {"benchmark": "bench_search", "device": device_name(), "torch": torch.__version__,
                              "runs": {}, "budget": search.scfg.budget_params or None,
                              "budget_limit": search.budget_params, "eval": asdict(ecfg), "log": log.lines,
                              "finals": old.get("finals", {})}
    best_of: dict[str, list[dict[str, Any]]] = {}
    for st, r in runs:
        rows = st.candidates(r, seeds=False)  # first-seed scores: runs with and without re-ranking compare alike
        if st.run(r)["config"]["eval"] != stored:
            log(f"warning: run {r} was evaluated with another protocol than {run}")
        cfg = st.run(r)["config"]["search"]
        best_of[r] = eligible(st.candidates(r), lambda row: not search.over_budget(parse_spec(row["spec"], strict=False)))
        result["runs"][r] = {"sampler": cfg["sampler"], "candidates": len(rows), "search": cfg,
                             "ok": sum(x["status"] == "ok" for x in rows), "status": st.run(r)["status"],
                             "per_stage": {s: sum(x["stage"] == s for x in rows) for s in (1, 2, 3)},
                             "stage1": [x["score"] for x in rows if x["stage"] == 1 and x["status"] == "ok"],
                             "best": best_of[r][0] if best_of[r] else None}
    if len(runs) > 1:  # sampler vs random at equal budget (first, so that even a cut-off run's JSON has it)
        a, r = (result["runs"][x[1]]["stage1"] for x in runs[:2])
        n = min(len(a), len(r))
        result["equal_budget"] = {"n": n, "evolution_best_proxy": max(a[:n]), "random_best_proxy": max(r[:n]),
                                  "evolution_mean_proxy": mean_std(a[:n])[0], "random_mean_proxy": mean_std(r[:n])[0],
                                  "evolution_top10_proxy": top_mean(a[:n]), "random_top10_proxy": top_mean(r[:n])}
        log(f"equal budget ({n} stage-1 candidates): {result['equal_budget']}")
    members = [(f"best#{i + 1}", row["spec"], row) for i, row in enumerate(best_of[run][:args.top])]
    if len(runs) > 1 and best_of[runs[1][1]]:
        rnd = best_of[runs[1][1]][0]
        same = [name for name, spec, _ in members if spec == rnd["spec"]]
        if same:  # both samplers start from the same seeded random population
            log(f"random#1 is {same[0]}: trained once")
            result["random_is"] = same[0]
        else:
            members.append(("random#1", rnd["spec"], rnd))
    members.append(("standard", str(standard), next((r for r in store.candidates(run) if r["spec"] == str(standard)),
                                                    None)))
    result["members"] = [{"name": name, "spec": spec, "proxy": row["score"] if row else None,
                          "proxy_seeds": row.get("seed_scores") if row else None,
                          "params": search.prices(parse_spec(spec, strict=False)).params,
                          "ffn_params": search.prices(parse_spec(spec, strict=False)).ffn_params}
                         for name, spec, row in members]
    for m in result["members"]:
        log(f"{m['name']}: proxy {m['proxy']}, {m['params']:,} params ({m['ffn_params']:,} FFN)  {m['spec']}")

    def save() -> None:
        write_json(out, result)

    save()
    if args.seeds <= 0:
        return
    used = [ecfg.seed] + [ecfg.seed + k for k in range(1, int(result["runs"][run]["search"].get("rerank_seeds", 0)) + 1)]
    seeds = fresh_seeds(args.seeds, used)
    result["search_seeds"] = used
    log(f"final protocol on fresh seeds {seeds} (the search trained with {used})")
    ev = Evaluator(replace(ecfg, group=len(members), hurdles=()), log=log)
    fcfg = FinalConfig(epochs=args.epochs, task_epochs=args.final_epochs, eval_every=50, dropout=0.1)
    result["final_config"] = asdict(fcfg)
    specs = [(name, parse_spec(spec, strict=False)) for name, spec, _ in members]
    done = run_finals(ev, specs, fcfg, seeds, args.check_seeds, result, save, log, args.deadline, t0)
    names = [n for n, _ in specs]
    result["summary"] = summarise(result, names, "standard", list(ev.state))
    result["complete"] = done
    for name in names:
        s = result["summary"][name]
        iv = s["paired"]
        log(f"{name:10s} dev {s['dev_mean']:.2f} ± {s['dev_std']:.2f} over {len(s['seeds'])} seeds, converged "
            f"{s['converged']}" + (f"; vs standard {iv['mean']:+.2f} (90 % {iv['low']:+.2f}..{iv['high']:+.2f}): "
                                   f"{s['verdict']}" if iv else ""))
    save()


if __name__ == "__main__":
    main()
