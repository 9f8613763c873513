"""Warm-up KD evaluation on GLUE: teacher fine-tuning, supernet warm-up, candidates, throughput.

Fine-tunes the teacher on each task (cached), warms up one supernet student per task (cached),
then evaluates the standard-FFN student (D = H), the published 6-layer EfficientBERT spec and
each published layer expression used in every layer, all with the same KD budget; then measures
throughput with N worker processes sharing the GPU.  Writes benchmarks/results/bench_kd.json.

    PYTHONPATH=. python benchmarks/bench_kd.py --data-dir DIR --teacher DIR [--workers 1,3]
"""
from __future__ import annotations

import json
import multiprocessing as mp
import time
from dataclasses import asdict, replace
from pathlib import Path

from _common import Log, eval_config, glue_parser

OUT = Path(__file__).parent / "results" / "bench_kd.json"
EFFICIENTBERT = ("[tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2)); elu(linear2_1(gelu(linear2_1(x,wb1)),wb2)); "
                 "sigmoid(linear1_2(relu(linear1_2(x,wb1)),wb2)); linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2); "
                 "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2); leaky_relu(linear2_3(gelu(linear2_3(x,wb1)),wb2))]")
LAYERS = [e.strip() for e in EFFICIENTBERT.strip("[]").split(";")]
STANDARD = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"


def _worker(args: tuple) -> list[dict]:
    cfg, specs = args
    from exprsearch.evaluate import Evaluator
    ev = Evaluator(cfg, log=lambda m: None)
    return [ev.evaluate(s).as_dict() for s in specs]


def main() -> None:
    ap = glue_parser(__doc__, tasks="MRPC,RTE,CoLA,SST-2", warmup_steps=2000, out=OUT, batch_size=32, lr=1e-4,
                     teacher_batch=32)
    ap.set_defaults(task_steps="MRPC=300,RTE=200,CoLA=400,SST-2=600", teacher_epochs=3.0)
    ap.add_argument("--workers", default="3", help="worker counts for the throughput test ('' to skip)")
    ap.add_argument("--throughput-candidates", type=int, default=6)
    args = ap.parse_args()
    import torch
    from exprsearch.evaluate import Evaluator
    cfg = eval_config(args)
    log = Log()
    logs = log.lines

    t0 = time.perf_counter()
    ev = Evaluator(cfg, log=log)
    setup_s = time.perf_counter() - t0
    teachers = {t: s.teacher_metrics for t, s in ev.state.items()}
    results = []
    for name, spec in [("standard_ffn", STANDARD), ("efficientbert", EFFICIENTBERT)] + \
            [(f"layer{i + 1}_everywhere", e) for i, e in enumerate(LAYERS)]:
        r = ev.evaluate(spec)
        d = r.as_dict()
        d["name"] = name
        results.append(d)
        log(f"{name}: {r.status} score {r.score} params {r.params} in {r.seconds:.1f}s {r.reason}")
    noKD = Evaluator(replace(cfg, no_kd=True), log=log).evaluate(STANDARD).as_dict()
    noKD["name"] = "standard_ffn_no_kd"
    results.append(noKD)
    del ev
    torch.cuda.empty_cache()
    # throughput: N processes share the GPU, each evaluating its share of candidates
    specs = [LAYERS[i % len(LAYERS)] for i in range(args.throughput_candidates)]
    throughput = []
    ctx = mp.get_context("spawn")
    for n in (int(v) for v in args.workers.split(",") if v):
        shares = [specs[i::n] for i in range(n)]
        t = time.perf_counter()
        with ctx.Pool(n) as pool:
            out = pool.map(_worker, [(cfg, s) for s in shares])
        wall = time.perf_counter() - t
        done = sum(len(o) for o in out)
        throughput.append({"workers": n, "candidates": done, "wall_s": wall,
                           "candidates_per_hour": 3600 * done / wall,
                           "mean_candidate_s": sum(r["seconds"] for o in out for r in o) / done})
        log(f"{n} worker(s): {done} candidates in {wall:.1f}s -> {3600 * done / wall:.0f} per hour")
    teacher_avg = 100 * sum(m[ev_t.main] for ev_t, m in ((__import__('exprsearch.glue', fromlist=['task']).task(t), m)
                                                         for t, m in teachers.items())) / len(teachers)
    result = {"benchmark": "bench_kd", "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
              "torch": torch.__version__, "config": asdict(cfg), "setup_s": setup_s, "teacher_dev": teachers,
              "teacher_avg": teacher_avg, "results": results, "throughput": throughput, "log": logs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"teacher avg {teacher_avg:.2f}")
    for r in results:
        print(f"{r['name']:24} {r['status']:8} score {r['score'] if r['score'] is None else round(r['score'], 2)} "
              f"{r['seconds']:.1f}s {json.dumps({t: {k: round(100 * v, 1) for k, v in m.items()} for t, m in r['metrics'].items()})}")
    print(json.dumps(throughput))


if __name__ == "__main__":
    main()
