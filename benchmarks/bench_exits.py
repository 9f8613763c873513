"""Dynamic inference on GLUE: early exit and layer skipping for the searched student (issue 9).

Per task: the student is trained by warm-up KD as in bench_kd, exit heads are added (two-stage:
frozen backbone, self-distillation from the last layer plus the exits' label loss), then each
policy is swept (the gates retrained at each compute price of ``GATE_COSTS``): dev metric,
mean layers run, wall-clock speed-up over the static student (one example at a time and batches
of 32, on the run device; the chosen setting also on CPU).
For each policy it reports the setting with the fewest layers whose score is within 1 point of
the static student.  Writes benchmarks/results/bench_exits.json after every task.

    PYTHONPATH=. python benchmarks/bench_exits.py --data-dir DIR --teacher DIR [--tasks SST-2,MRPC]
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from _common import Log, device_name, eval_config, glue_parser, write_json
from bench_arch import SEARCHED  # the H100 evolution run's best student

OUT = Path(__file__).parent / "results" / "bench_exits.json"


def best_within(rows: list[dict], static: float, loss: float = 1.0) -> dict | None:
    """The row with the fewest mean layers whose score is at least ``static - loss``."""
    ok = [r for r in rows if not r.get("chosen") and r["score"] >= static - loss]
    return min(ok, key=lambda r: r["avg_layers"]) if ok else None


def main() -> None:
    ap = glue_parser(__doc__, tasks="SST-2,MRPC", warmup_steps=400, out=OUT)
    ap.add_argument("--spec", default=SEARCHED)
    ap.add_argument("--exit-steps", type=int, default=400)
    ap.add_argument("--gate-steps", type=int, default=300)
    ap.add_argument("--timing-rows", type=int, default=64)
    ap.add_argument("--schedule", default="two-stage", choices=("two-stage", "joint"),
                    help="exit-head training: frozen backbone, or backbone and exits together (the static "
                         "reference stays the student before it)")
    ap.add_argument("--exit-label-weight", type=float, default=1.0, help="weight of the exits' own label loss")
    ap.add_argument("--backbone-lr", type=float, default=5e-5, help="joint schedule: the backbone's learning rate")
    ap.add_argument("--policies", default="entropy,patience,gate", help="policies swept (gate: the slowest, "
                    "it retrains the gates at each compute price)")
    args = ap.parse_args()
    import torch

    from exprsearch.kd.exits import POLICIES, ExitConfig, run_exits
    from exprsearch.rows.glue import task
    from exprsearch.lang.parsing import parse_spec
    ecfg = eval_config(args, latency_batch=0)
    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    if bad := [p for p in policies if p not in POLICIES]:
        ap.error(f"unknown policy {bad[0]!r}; choose from {', '.join(POLICIES)}")
    xcfg = ExitConfig(exit_steps=args.exit_steps, gate_steps=args.gate_steps, timing_rows=args.timing_rows,
                      threshold=0.3, patience=2, schedule=args.schedule, exit_label_weight=args.exit_label_weight,
                      backbone_lr=args.backbone_lr)
    log = Log()
    result = {"benchmark": "bench_exits", "device": device_name(), "torch": torch.__version__, "eval": asdict(ecfg),
              "exits": asdict(xcfg), "tasks": {}, "log": log.lines}
    for name in ecfg.tasks:
        t0 = time.perf_counter()
        out = run_exits(parse_spec(args.spec), name, ecfg, xcfg, policies=policies, log=log)
        static = 100 * out["static"][task(name).main]
        out["seconds"] = time.perf_counter() - t0
        out["best_within_1pt"] = {p: best_within(rows, static) for p, rows in out["rows"].items()}
        result["tasks"][name] = out
        write_json(args.out, result)
        log(f"{name}: static {static:.2f} ({out['seconds']:.0f}s)")
        for p, r in out["best_within_1pt"].items():
            if r is None:
                log(f"  {p}: no setting within 1 point")
            else:
                log(f"  {p} {r['setting']}: {r['score']:.2f}, {r['avg_layers']:.2f} layers (x{r['layer_ratio']:.2f} fewer), "
                    f"speed-up x{r.get('speedup_b1', 0):.2f} (batch 1) x{r.get('speedup_b32', 0):.2f} (batch 32)")


if __name__ == "__main__":
    main()
