"""Does the search proxy rank candidates as a full KD fine-tune does?  (issue 12, fidelity study)

Candidates (>= 24): the standard FFN, the published EfficientBERT spec and its six layers each
used everywhere, random samples of the default space and evolved ones (mutations of the standard
FFN and the published layers), the last two at most the standard student's parameters.  Each is scored
* by the **proxy** -- the search's protocol (bench_kd's: warm supernet, 75 / 50 / 100 / 150 KD
  steps at batch 128, no dropout), 3 seeds;
* by the **final** protocol -- a full KD fine-tune from the same warm supernet with as many
  training examples as the brief's hand-written KD loop (MRPC 600 x 32, RTE 400 x 32, CoLA
  1000 x 32, SST-2 2000 x 32, here at batch 128), dropout 0.1, 3 seeds.
Seeds change the batch order and the candidate's random draws; teachers (strong recipe) and warm
supernets are shared.  Reports per candidate mean +- std of both, the mean seed std of each, and
Kendall's tau of proxy vs final -- overall, per task, for one proxy seed, and for cheaper proxies
read off the same runs (subsets of tasks).  Writes benchmarks/results/bench_fidelity.json after
every pass, so a run cut short keeps what it finished; ``--resume`` continues such a file (its
candidates, the passes it lacks), e.g. with more final seeds for a less noisy reference;
``--report`` recomputes the summary of a finished file without training:

    PYTHONPATH=. python benchmarks/bench_fidelity.py --data-dir DIR --teacher DIR [--random 8 --evolved 8]
    PYTHONPATH=. python benchmarks/bench_fidelity.py --data-dir DIR --teacher DIR --resume --seeds 6 --final-seeds 6
    PYTHONPATH=. python benchmarks/bench_fidelity.py --report
"""
from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, replace
from itertools import combinations
from pathlib import Path
from typing import Callable

from _common import GpuUtil, Log, device_name, eval_config, glue_parser, write_json
from bench_kd import NAMED, STANDARD

OUT = Path(__file__).parent / "results" / "bench_fidelity.json"
FINAL_STEPS = "MRPC=150,RTE=100,CoLA=250,SST-2=500"


def final_config(cfg, steps: str = FINAL_STEPS, **kw):
    """The final protocol: a full KD fine-tune from the same warm supernet (the teacher's dropout,
    no hurdles, no latency timing), the same teachers and supernets as ``cfg``."""
    return replace(cfg, task_steps=steps, dropout=None, hurdles=(), latency_batch=0, **kw)


def candidates(layers: int, n_random: int, n_evolved: int, budget: float, price, key, seed: int = 0
               ) -> list[tuple[str, str]]:
    """(name, spec) of the named candidates, then random and evolved ones: distinct, within budget."""
    from exprsearch.lang.expr import ModelSpec
    from exprsearch.lang.parsing import parse, parse_spec
    from exprsearch.space.evolve import mutate
    from exprsearch.space.generate import Space, sample
    rng, space = random.Random(seed), Space()
    out, seen = [], set()

    def take(name: str, spec, limit: float = budget) -> bool:
        k = key(spec)
        if k in seen or price(spec)[0] > limit:
            return False
        seen.add(k)
        out.append((name, str(spec)))
        return True

    for name, text in NAMED:  # the published layers whatever their size (some are above the budget)
        take(name, parse_spec(text).broadcast(layers), float("inf"))
    while sum(n.startswith("random") for n, _ in out) < n_random:
        take(f"random{len(out)}", ModelSpec((sample(space, rng),)).broadcast(layers))
    parents = [parse(STANDARD)] + [parse(t) for n, t in NAMED if n.startswith("layer")]
    while sum(n.startswith("evolved") for n, _ in out) < n_evolved:
        child = rng.choice(parents)
        for _ in range(rng.randint(1, 2)):
            child = mutate(child, space, rng)[0]
        take(f"evolved{len(out)}", ModelSpec((child,)).broadcast(layers))
    return out


def summarise(names: list[str], proxy: dict[int, list], final: dict[int, list], tasks: list[str]) -> dict:
    """Mean +- std per candidate, the seed noise of each protocol, and the rank agreement."""
    from exprsearch.rows.glue import task
    from exprsearch.search.stats import kendall_tau, mean_std

    def scores(runs: dict[int, list], i: int, tasks_: list[str] | None = None) -> list[float]:
        out = []
        for results in runs.values():
            r = results[i]
            if r["status"] == "ok":
                ts = tasks_ or tasks
                out.append(100 * sum(r["metrics"][t][task(t).main] for t in ts) / len(ts))
        return out

    ok = [i for i in range(len(names)) if scores(proxy, i) and scores(final, i)]
    rows = []
    for i in ok:
        pm, ps = mean_std(scores(proxy, i))
        fm, fs = mean_std(scores(final, i))
        rows.append({"name": names[i], "spec": proxy[min(proxy)][i]["spec"], "params": proxy[min(proxy)][i]["params"],
                     "proxy_mean": pm, "proxy_std": ps, "final_mean": fm, "final_std": fs})
    pmean, fmean = [r["proxy_mean"] for r in rows], [r["final_mean"] for r in rows]
    out = {"candidates": rows, "n": len(rows),
           "proxy_seed_std": sum(r["proxy_std"] for r in rows) / max(1, len(rows)),
           "final_seed_std": sum(r["final_std"] for r in rows) / max(1, len(rows)),
           "final_spread": mean_std(fmean)[1] if len(fmean) > 1 else 0.0,
           "kendall_tau": kendall_tau(pmean, fmean),
           "kendall_tau_one_proxy_seed": {s: kendall_tau([scores({s: proxy[s]}, i)[0] for i in ok], fmean)
                                          for s in proxy if all(scores({s: proxy[s]}, i) for i in ok)},
           "kendall_tau_final_seed_vs_seed": [kendall_tau([scores({a: final[a]}, i)[0] for i in ok],
                                                          [scores({b: final[b]}, i)[0] for i in ok])
                                              for a, b in combinations(sorted(final), 2)
                                              if all(scores({a: final[a]}, i) and scores({b: final[b]}, i) for i in ok)],
           "per_task": {}, "task_subsets": {}}
    out.update(reliability(proxy, final, ok, scores, pmean, fmean))
    for t in tasks:  # each task's proxy vs that task's final
        out["per_task"][t] = kendall_tau([mean_std(scores(proxy, i, [t]))[0] for i in ok],
                                         [mean_std(scores(final, i, [t]))[0] for i in ok])
    for k in range(1, len(tasks)):  # a cheaper proxy: fewer tasks, against the full final score
        for sub in combinations(tasks, k):
            out["task_subsets"][",".join(sub)] = kendall_tau([mean_std(scores(proxy, i, list(sub)))[0] for i in ok],
                                                             fmean)
    return out


def reliability(proxy: dict[int, list], final: dict[int, list], ok: list[int],
                scores: Callable[[dict[int, list], int], list[float]], pmean: list[float],
                fmean: list[float]) -> dict:
    """How far the tau can be trusted: tau against the full final mean (``fmean``) for the first k
    proxy seeds, the final protocol against itself (first half of its seeds vs the second), a
    bootstrap 90 % interval over candidates, and each pass's mean score (a shift between passes is
    a teacher or supernet that differs between device sessions; it moves every candidate alike).
    A subset of passes in which some candidate has no successful result is left out.

    >>> p = {0: [{"s": 1.0}, {"s": 2.0}, {"s": 3.0}]}
    >>> f = {0: [{"s": 1.0}, {"s": 3.0}, {"s": 2.0}], 1: [{"s": 1.0}, {"s": 2.0}, {"s": 4.0}]}
    >>> r = reliability(p, f, [0, 1, 2], lambda runs, i: [res[i]["s"] for res in runs.values()],
    ...                 [1.0, 2.0, 3.0], [1.0, 2.5, 3.0])
    >>> r["kendall_tau_by_proxy_seeds"], r["final_split_half_tau"], r["pass_means"]["final0"]
    ({1: 1.0}, 0.3333333333333333, 2.0)
    """
    from exprsearch.search.stats import kendall_tau, mean_std

    def means(runs: dict[int, list]) -> list[float] | None:
        per = [scores(runs, i) for i in ok]
        return [mean_std(v)[0] for v in per] if all(per) else None

    def some(runs: dict[int, list], seeds: list[int]) -> dict[int, list]:
        return {s: runs[s] for s in seeds}

    by_k = {k: kendall_tau(m, fmean) for k in range(1, len(proxy) + 1)
            if (m := means(some(proxy, sorted(proxy)[:k]))) is not None}
    seeds = sorted(final)
    halves = [means(some(final, part)) for part in (seeds[:len(seeds) // 2], seeds[len(seeds) // 2:])]
    split = kendall_tau(*halves) if len(seeds) > 1 and None not in halves else None
    rng, boot = random.Random(0), []
    for _ in range(1000):
        idx = [rng.randrange(len(ok)) for _ in ok]
        boot.append(kendall_tau([pmean[j] for j in idx], [fmean[j] for j in idx]))
    boot.sort()
    passes = {f"{label}{s}": runs[s] for label, runs in (("proxy", proxy), ("final", final)) for s in sorted(runs)}
    pass_means = {k: mean_std(v)[0] for k, res in passes.items()
                  if (v := [x for i in ok for x in scores({0: res}, i)])}
    return {"kendall_tau_by_proxy_seeds": by_k, "final_split_half_tau": split,
            "kendall_tau_ci90": [boot[50], boot[949]] if len(ok) > 1 else None, "pass_means": pass_means}


def passes_by_seed(result: dict) -> dict:
    """``result`` with its passes keyed by int seed again (JSON made them strings)."""
    for label in ("proxy", "final"):
        result[label] = {int(k): v for k, v in result[label].items()}
    return result


def resumed(path: Path, fresh: dict, log: Log) -> dict:
    """The result file at ``path`` to continue: its candidates and passes (seed keys back to int),
    this run's log appended; an error if it was made with other protocols (paths may differ)."""
    old = json.loads(path.read_text())
    paths = {"data_dir", "teacher", "cache_dir"}
    for key in ("proxy_config", "final_config"):
        a, b = ({k: v for k, v in json.loads(json.dumps(c, default=str)).items() if k not in paths}
                for c in (old[key], fresh[key]))
        if a != b:
            diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            raise SystemExit(f"{path}: made with another {key.split('_')[0]} protocol ({', '.join(diff)} differ); "
                             f"use another --out or the same options")
    passes_by_seed(old)
    if "specs" not in old:  # files written before the list was stored: the specs of a finished pass
        passes = [p for label in ("proxy", "final") for p in old[label].values()]
        if not passes:
            raise SystemExit(f"{path}: no candidates and no finished pass to take them from; run without --resume")
        old["specs"] = [r["spec"] for r in passes[0]]
    log.lines[:0] = old.get("log", [])
    log(f"resuming {path}: proxy seeds {sorted(old['proxy'])}, final seeds {sorted(old['final'])}")
    return {**old, "device": fresh["device"], "torch": fresh["torch"], "log": log.lines}


def main() -> None:
    pre = argparse.ArgumentParser(add_help=False)  # --report needs no data, teacher or GPU
    pre.add_argument("--report", action="store_true")
    pre.add_argument("--out", default=OUT)
    early, _ = pre.parse_known_args()
    if early.report:
        return report(Path(early.out))
    ap = glue_parser(__doc__, tasks="MRPC,RTE,CoLA,SST-2", warmup_steps=600, out=OUT)
    ap.set_defaults(teacher_epochs=5.0, teacher_batch=32)
    ap.add_argument("--teacher-task-epochs", default="SST-2=3")
    ap.add_argument("--final-steps", default=FINAL_STEPS)
    ap.add_argument("--random", type=int, default=8)
    ap.add_argument("--evolved", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=3, help="proxy seeds")
    ap.add_argument("--final-seeds", type=int, default=None, help="final-protocol seeds (default: --seeds)")
    ap.add_argument("--resume", action="store_true",
                    help="continue --out: its candidates (--random/--evolved ignored), only the passes it lacks "
                         "(same protocols required)")
    ap.add_argument("--group", type=int, default=12)
    ap.add_argument("--report", action="store_true", help="recompute and print the summary of --out; trains nothing")
    args = ap.parse_args()
    import torch

    from exprsearch.kd.evaluate import Evaluator
    from exprsearch.lang.parsing import parse_spec
    from exprsearch.search.search import Search, SearchConfig
    from exprsearch.search.store import Store
    log = Log()
    cfg = eval_config(args, teacher_task_epochs=args.teacher_task_epochs, group=args.group, latency_batch=0)
    final_cfg = final_config(cfg, args.final_steps)
    pricer = Search(Store(":memory:"), SearchConfig(), cfg, log=lambda m: None, progress=False)
    budget = pricer.price(parse_spec(STANDARD).broadcast(cfg.layers))[0]
    result = {"benchmark": "bench_fidelity", "device": device_name(), "torch": torch.__version__,
              "proxy_config": asdict(cfg), "final_config": asdict(final_cfg), "budget_params": budget,
              "names": [], "proxy": {}, "final": {}, "seconds": {}, "log": log.lines}
    if args.resume and Path(args.out).exists():  # its candidates (--random / --evolved do not apply)
        result = resumed(Path(args.out), result, log)
        names, specs = result["names"], result["specs"]
    else:
        cands = candidates(cfg.layers, args.random, args.evolved, budget, pricer.price, lambda s: pricer.key(s))
        names, specs = [n for n, _ in cands], [s for _, s in cands]
        result["names"], result["specs"] = names, specs
    log(f"{len(specs)} candidates, at most {budget} parameters")
    tasks = list(cfg.tasks)
    evs = {"proxy": Evaluator(cfg, log=log), "final": Evaluator(final_cfg, log=log)}
    result["teacher_dev"] = {t: s.teacher_metrics for t, s in evs["proxy"].state.items()}
    n_seeds = {"proxy": args.seeds, "final": args.seeds if args.final_seeds is None else args.final_seeds}
    for seed in range(max(n_seeds.values())):  # interleaved: a run cut short still pairs proxy and final seeds
        for label, ev in evs.items():
            if seed >= n_seeds[label] or seed in result[label]:
                continue
            t0 = time.perf_counter()
            with GpuUtil() as util:
                res = ev.evaluate_many([parse_spec(s) for s in specs], seed=seed)
            secs = time.perf_counter() - t0
            result[label][seed] = [r.as_dict() for r in res]
            result["seconds"][f"{label}{seed}"] = {"wall_s": secs, "per_candidate_s": secs / len(specs),
                                                   "gpu_util_pct": util.mean}
            if result["proxy"] and result["final"]:
                result["summary"] = summarise(names, result["proxy"], result["final"], tasks)
                log(f"after {label} seed {seed}: tau {result['summary']['kendall_tau']:.3f} "
                    f"(proxy seed std {result['summary']['proxy_seed_std']:.2f}, "
                    f"final seed std {result['summary']['final_seed_std']:.2f})")
            log(f"{label} seed {seed}: {secs:.0f}s ({secs / len(specs):.1f}s a candidate), "
                f"{sum(r.status == 'ok' for r in res)} ok")
            write_json(args.out, result)
    print_summary(result.get("summary", {}))


def print_summary(s: dict) -> None:
    """The candidates by final score, then the headline numbers."""
    for r in sorted(s.get("candidates", []), key=lambda r: -r["final_mean"]):
        print(f"{r['name']:20} proxy {r['proxy_mean']:6.2f} +- {r['proxy_std']:4.2f}   "
              f"final {r['final_mean']:6.2f} +- {r['final_std']:4.2f}   {r['params'] / 1e6:.2f}M")
    print({k: s.get(k) for k in ("kendall_tau", "kendall_tau_ci90", "kendall_tau_by_proxy_seeds", "final_split_half_tau",
                                 "proxy_seed_std", "final_seed_std", "per_task")})


def report(path: Path) -> None:
    """``--report``: the summary of a result file recomputed from its passes (new statistics for old
    runs), written back and printed; trains nothing."""
    if not path.exists():
        raise SystemExit(f"{path}: no such result file")
    result = passes_by_seed(json.loads(path.read_text()))
    if not (result["proxy"] and result["final"]):
        raise SystemExit(f"{path}: needs at least one proxy and one final pass")
    result["summary"] = summarise(result["names"], result["proxy"], result["final"],
                                  list(result["proxy_config"]["tasks"]))
    write_json(path, result)
    print_summary(result["summary"])


if __name__ == "__main__":
    main()
