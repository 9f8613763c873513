"""Beyond the FFN: accuracy vs latency of attention, head and depth variants (issue 8).

One LayerDrop supernet per task (KD warm-up with layer drop rate p, every candidate inherits
it), then, for each FFN spec (the standard FFN and the search's best), four students with the
same KD budget: the full model, LSRA attention in every layer, 50 % of the heads kept by
gradient importance (Michel et al.), and the half-depth student extracted by the every-other
rule.  Writes benchmarks/results/bench_arch.json after every candidate (a cut-off run keeps
what it measured).

    PYTHONPATH=. python benchmarks/bench_arch.py --data-dir DIR --teacher DIR [--tasks MRPC,RTE,CoLA]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OUT = Path(__file__).parent / "results" / "bench_arch.json"
STANDARD = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"
# the best student of the H100 evolution run (benchmarks/results/bench_search.json): layer 2 differs
SEARCHED = ("[{s}; linear1_1(gelu(linear1_1(elu(x),wb1)),wb2); {s}; {s}; {s}; {s}]").format(s=STANDARD)


def variants(ffn: str, layers: int, heads: int) -> list[tuple[str, str]]:
    """(name, spec) of the four students of one FFN spec."""
    from exprsearch.parsing import parse_spec
    spec = parse_spec(ffn).broadcast(layers)
    items = [str(e) for e in spec.layers]
    lsra = "; ".join(f"layer(attn=lsra(heads={heads // 2}, kernel=7), ffn={e})" for e in items)
    half = "; ".join(f"layer(attn=mha(heads={heads // 2}), ffn={e})" for e in items)
    depth = "; ".join(items[i] for i in range(1, layers, 2))  # every-other rule, p = 0.5
    return [("full", "[" + "; ".join(items) + "]"), ("lsra", f"[{lsra}]"), ("heads_50pct", f"[{half}]"),
            ("half_depth", f"[{depth}]")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--tasks", default="MRPC,RTE,CoLA")
    ap.add_argument("--task-steps", default="MRPC=75,RTE=50,CoLA=100,SST-2=150")
    ap.add_argument("--warmup-steps", type=int, default=600)
    ap.add_argument("--layerdrop", type=float, default=0.5)
    ap.add_argument("--head-importance-steps", type=int, default=20)
    ap.add_argument("--teacher-epochs", type=float, default=2.0)
    ap.add_argument("--teacher-batch", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--ffns", default="standard,searched")
    ap.add_argument("--max-train", type=int, default=None, help="training rows per task (smoke runs)")
    ap.add_argument("--latency-batch", type=int, default=32)
    ap.add_argument("--cache-dir", default="/tmp/exprsearch-cache")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    import torch
    from exprsearch.evaluate import EvalConfig, Evaluator
    cfg = EvalConfig(tasks=tuple(args.tasks.split(",")), data_dir=args.data_dir, teacher=args.teacher,
                     task_steps=args.task_steps, warmup_steps=args.warmup_steps, teacher_epochs=args.teacher_epochs,
                     teacher_batch=args.teacher_batch, batch_size=args.batch_size, lr=args.lr,
                     layerdrop=args.layerdrop, head_importance_steps=args.head_importance_steps,
                     max_train=args.max_train, max_dev=args.max_train, latency_batch=args.latency_batch,
                     cache_dir=args.cache_dir)
    logs: list[str] = []

    def log(m: str) -> None:
        logs.append(f"{time.strftime('%H:%M:%S')} {m}")
        print(m, flush=True)

    t0 = time.perf_counter()
    ev = Evaluator(cfg, log=log)
    result = {"benchmark": "bench_arch", "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
              "torch": torch.__version__, "config": asdict(cfg), "setup_s": time.perf_counter() - t0,
              "teacher_dev": {t: s.teacher_metrics for t, s in ev.state.items()}, "results": [], "log": logs}
    heads = next(iter(ev.state.values())).teacher.config.num_attention_heads
    ffns = {"standard": STANDARD, "searched": SEARCHED}
    for ffn_name in args.ffns.split(","):
        for name, spec in variants(ffns[ffn_name], cfg.layers, heads):
            r = ev.evaluate(spec).as_dict()
            r["name"], r["ffn"] = name, ffn_name
            r.pop("curves", None)
            result["results"].append(r)
            log(f"{ffn_name}/{name}: {r['status']} score {r['score']} params {r['params']} "
                f"latency {r['latency_ms']} ms in {r['seconds']:.1f}s {r['reason']}")
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for r in result["results"]:
        print(f"{r['ffn']:9} {r['name']:12} {r['status']:7} score {r['score'] and round(r['score'], 2)} "
              f"params {r['params'] / 1e6:.2f}M latency {r['latency_ms'] and round(r['latency_ms'], 2)} ms")


if __name__ == "__main__":
    main()
