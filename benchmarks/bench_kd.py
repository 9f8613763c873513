"""Warm-up KD evaluation on GLUE: proxy quality, and candidates per GPU-hour.

Set-up (cached, tasks prepared in parallel processes): the teacher fine-tuned with the strong
recipe (SST-2 3 epochs, the others 5, batch 32, lr 5e-5), one supernet student per task warmed
up by KD.  Then:
1. quality: the standard-FFN student, the published EfficientBERT spec and each published layer
   used everywhere, scored by the proxy (one group, lock-step), plus the no-KD baseline;
2. equal proxy quality: the first ``--old-path`` of them again on the previous path and protocol
   (one candidate at a time, eager, no CUDA graphs, student dropout 0.1): score differences and
   rank agreement;
3. throughput: a random-sampler search of ``--throughput-candidates`` candidates (at most the
   standard student's parameters) per worker count, candidates per hour and GPU utilisation,
   beside the previous figure (272 per H100-hour, 3 worker processes, eager).
Writes benchmarks/results/bench_kd.json after each part.

    PYTHONPATH=. python benchmarks/bench_kd.py --data-dir DIR --teacher DIR [--workers 1,2]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict, replace
from pathlib import Path

from _common import GpuUtil, Log, device_name, eval_config, glue_parser, write_json

OUT = Path(__file__).parent / "results" / "bench_kd.json"
EFFICIENTBERT = ("[tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2)); elu(linear2_1(gelu(linear2_1(x,wb1)),wb2)); "
                 "sigmoid(linear1_2(relu(linear1_2(x,wb1)),wb2)); linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2); "
                 "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2); leaky_relu(linear2_3(gelu(linear2_3(x,wb1)),wb2))]")
LAYERS = [e.strip() for e in EFFICIENTBERT.strip("[]").split(";")]
STANDARD = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"
NAMED = [("standard_ffn", STANDARD), ("efficientbert", EFFICIENTBERT)] + \
    [(f"layer{i + 1}_everywhere", e) for i, e in enumerate(LAYERS)]
PREVIOUS = {"candidates_per_hour": 272, "device": "H100", "workers": 3, "path": "eager, one candidate per process"}


def _row(name: str, r) -> dict:
    return {**r.as_dict(), "name": name}


def main() -> None:
    ap = glue_parser(__doc__, tasks="MRPC,RTE,CoLA,SST-2", warmup_steps=600, out=OUT)
    ap.set_defaults(teacher_epochs=5.0, teacher_batch=32)
    ap.add_argument("--teacher-task-epochs", default="SST-2=3")
    ap.add_argument("--group", type=int, default=16)
    ap.add_argument("--streams", action=argparse.BooleanOptionalAction, default=True,
                    help="each candidate of a group on its own CUDA stream")
    ap.add_argument("--workers", default="1,2", help="worker counts for the throughput search ('' to skip)")
    ap.add_argument("--throughput-candidates", type=int, default=32)
    ap.add_argument("--old-path", type=int, default=4, help="named candidates re-scored on the previous path")
    args = ap.parse_args()
    import torch

    from exprsearch.kd.evaluate import Evaluator
    from exprsearch.rows.glue import task
    from exprsearch.lang.parsing import parse_spec
    from exprsearch.search.stats import kendall_tau
    cfg = eval_config(args, teacher_task_epochs=args.teacher_task_epochs, group=args.group, streams=args.streams)
    log = Log()
    result = {"benchmark": "bench_kd", "device": device_name(), "torch": torch.__version__, "config": asdict(cfg),
              "previous": PREVIOUS, "log": log.lines}

    t0 = time.perf_counter()
    ev = Evaluator(cfg, log=log)
    result["setup_s"] = time.perf_counter() - t0
    teachers = {t: s.teacher_metrics for t, s in ev.state.items()}
    result["teacher_dev"] = teachers
    result["teacher_avg"] = 100 * sum(m[task(t).main] for t, m in teachers.items()) / len(teachers)
    log(f"set-up {result['setup_s']:.0f}s; teacher mean {result['teacher_avg']:.2f}: {teachers}")

    # 1. quality on the new path
    t0 = time.perf_counter()
    with GpuUtil() as util:
        named = ev.evaluate_many([parse_spec(s) for _, s in NAMED])
    result["quality_wall_s"], result["quality_gpu_util"] = time.perf_counter() - t0, util.mean
    result["results"] = [_row(n, r) for (n, _), r in zip(NAMED, named)]
    no_kd = Evaluator(replace(cfg, no_kd=True), log=log).evaluate(parse_spec(STANDARD))
    result["results"].append(_row("standard_ffn_no_kd", no_kd))
    for r in result["results"]:
        log(f"{r['name']:22} {r['status']:7} score {r['score'] if r['score'] is None else round(r['score'], 2)}")
    write_json(args.out, result)

    # 2. the same candidates on the previous path
    if args.old_path:
        old_ev = Evaluator(replace(cfg, group=1, cuda_graphs=False, streams=False, dropout=None), log=log)
        t0 = time.perf_counter()
        old = [old_ev.evaluate(parse_spec(s)) for _, s in NAMED[:args.old_path]]
        wall = time.perf_counter() - t0
        new, prev = [r.score for r in named[:args.old_path]], [r.score for r in old]
        diffs = [abs(a - b) for a, b in zip(new, prev) if a is not None and b is not None]
        result["old_path"] = {"scores_new": new, "scores_old": prev, "mean_abs_diff": sum(diffs) / max(1, len(diffs)),
                              "kendall_tau": kendall_tau(new, prev), "seconds_per_candidate": wall / len(old)}
        log(f"previous path: {result['old_path']}")
        del old_ev
        write_json(args.out, result)
    del ev
    torch.cuda.empty_cache()

    # 3. throughput of a search
    result["throughput"] = []
    for n in (int(v) for v in args.workers.split(",") if v):
        row = throughput(cfg, args, n, log)
        result["throughput"].append(row)
        log(f"{n} worker(s): {row['evaluated']} candidates in {row['wall_s']:.0f}s -> {row['candidates_per_hour']:.0f}"
            f" per hour (GPU busy {row['gpu_util_pct'] or 0:.0f}%; previously {PREVIOUS['candidates_per_hour']})")
        write_json(args.out, result)


def throughput(cfg, args, workers: int, log) -> dict:
    """A random-sampler stage-1 search of ``args.throughput_candidates`` at <= the standard student's params."""
    from exprsearch.lang.parsing import parse_spec
    from exprsearch.search.search import Search, SearchConfig
    from exprsearch.search.store import Store
    store = Store(f"/tmp/bench_kd_{workers}.db")
    scfg = SearchConfig(sampler="random", candidates=args.throughput_candidates, stages="1", workers=workers,
                        batch=cfg.group * workers, seed=100 + workers)
    search = Search(store, scfg, cfg, log=log)
    search.budget_params = float(search.price(parse_spec(STANDARD).broadcast(cfg.layers))[0])
    search.backend()  # worker start-up (loading the cached tasks) is not part of the rate
    with GpuUtil() as util:
        t0 = time.perf_counter()
        summary = search.run()
        wall = time.perf_counter() - t0
    ok = [r for r in store.candidates(search.run_id) if r["status"] == "ok"]
    store.close()
    done = summary["stats"]["evaluated"]
    return {"workers": workers, "group": cfg.group, "evaluated": done, "ok": len(ok), "wall_s": wall,
            "candidates_per_hour": 3600 * done / wall, "gpu_util_pct": util.mean,
            "best": max((r["score"] for r in ok), default=None), "stats": summary["stats"]}


if __name__ == "__main__":
    main()
