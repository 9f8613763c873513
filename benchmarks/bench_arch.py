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

import time
from dataclasses import asdict
from pathlib import Path

from _common import Log, device_name, eval_config, glue_parser, write_json

OUT = Path(__file__).parent / "results" / "bench_arch.json"
STANDARD = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"
# the best student of the H100 evolution run (benchmarks/results/bench_search.json): layer 2 differs
SEARCHED = ("[{s}; linear1_1(gelu(linear1_1(elu(x),wb1)),wb2); {s}; {s}; {s}; {s}]").format(s=STANDARD)


def variants(ffn: str, layers: int, heads: int) -> list[tuple[str, str]]:
    """(name, spec) of the four students of one FFN spec."""
    from exprsearch.lang.parsing import parse_spec
    spec = parse_spec(ffn).broadcast(layers)
    items = [str(e) for e in spec.layers]
    lsra = "; ".join(f"layer(attn=lsra(heads={heads // 2}, kernel=7), ffn={e})" for e in items)
    half = "; ".join(f"layer(attn=mha(heads={heads // 2}), ffn={e})" for e in items)
    depth = "; ".join(items[i] for i in range(1, layers, 2))  # every-other rule, p = 0.5
    return [("full", "[" + "; ".join(items) + "]"), ("lsra", f"[{lsra}]"), ("heads_50pct", f"[{half}]"),
            ("half_depth", f"[{depth}]")]


def main() -> None:
    ap = glue_parser(__doc__, tasks="MRPC,RTE,CoLA", warmup_steps=600, out=OUT)
    ap.add_argument("--layerdrop", type=float, default=0.5)
    ap.add_argument("--head-importance-steps", type=int, default=20)
    ap.add_argument("--ffns", default="standard,searched")
    ap.add_argument("--latency-batch", type=int, default=32)
    args = ap.parse_args()
    import torch

    from exprsearch.kd.evaluate import Evaluator
    from exprsearch.lang.parsing import parse_spec
    cfg = eval_config(args, layerdrop=args.layerdrop, head_importance_steps=args.head_importance_steps,
                      latency_batch=args.latency_batch)
    log = Log()
    t0 = time.perf_counter()
    ev = Evaluator(cfg, log=log)
    result = {"benchmark": "bench_arch", "device": device_name(), "torch": torch.__version__, "config": asdict(cfg),
              "setup_s": time.perf_counter() - t0, "teacher_dev": {t: s.teacher_metrics for t, s in ev.state.items()},
              "results": [], "log": log.lines}
    heads = next(iter(ev.state.values())).teacher.config.num_attention_heads
    ffns = {"standard": STANDARD, "searched": SEARCHED}
    for ffn_name in args.ffns.split(","):
        for name, spec in variants(ffns[ffn_name], cfg.layers, heads):
            r = ev.evaluate(parse_spec(spec)).as_dict()
            r["name"], r["ffn"] = name, ffn_name
            r.pop("curves", None)
            result["results"].append(r)
            log(f"{ffn_name}/{name}: {r['status']} score {r['score']} params {r['params']} "
                f"latency {r['latency_ms']} ms in {r['seconds']:.1f}s {r['reason']}")
            write_json(args.out, result)
    for r in result["results"]:
        print(f"{r['ffn']:9} {r['name']:12} {r['status']:7} score {r['score'] and round(r['score'], 2)} "
              f"params {r['params'] / 1e6:.2f}M latency {r['latency_ms'] and round(r['latency_ms'], 2)} ms")


if __name__ == "__main__":
    main()
