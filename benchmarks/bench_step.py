"""Milliseconds per KD training step, one candidate at a time vs K candidates in lock-step.

A 6-layer student per candidate (MiniLM-sized teacher, its FFNs the EfficientBERT layers in
turn), real length-bucketed batches of one task, bf16 autocast, fused AdamW; a step is the
teacher's forward, each student's forward and backward, the KD loss, per-candidate clipping and
the update.  Modes: ``eager`` (the old path: every kernel launched from Python), ``graphs`` (each
length bucket's whole step captured once as a CUDA graph, then replayed), ``graphs+streams`` (each
candidate on its own stream inside the graph).  Per mode: steady-state ms per step and per
candidate-step (replays only), the one-off cost of eager warm-up + captures, and GPU utilisation.

    PYTHONPATH=. python benchmarks/bench_step.py --data-dir DIR --teacher DIR [--groups 1,8,16]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _common import GpuUtil, device_name, write_json

SPECS = ["linear1_1(gelu(linear1_1(x,wb1)),wb2)", "tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))",
         "elu(linear2_1(gelu(linear2_1(x,wb1)),wb2))", "sigmoid(linear1_2(relu(linear1_2(x,wb1)),wb2))",
         "linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)", "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)",
         "leaky_relu(linear2_3(gelu(linear2_3(x,wb1)),wb2))"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--task", default="MRPC")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--groups", default="1,4,8,16")
    ap.add_argument("--modes", default="eager,graphs,graphs+streams")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_step.json"))
    args = ap.parse_args()
    import torch

    from exprsearch.compiler import StudentConfig
    from exprsearch.kd.distill import KDConfig, KDLoss, SupernetStudent
    from exprsearch.rows.glue import read_split, task
    from exprsearch.engine.group import GroupTrainer, Member
    from exprsearch.kd.teacher import load_teacher, load_tokenizer
    from exprsearch.rows.tokens import Batcher, encode
    from exprsearch.engine.train import TrainConfig
    from exprsearch.lang.parsing import parse_spec
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    t = task(args.task)
    teacher = load_teacher(Path(args.teacher), t.num_labels).to(dev).eval()
    if dev.type == "cuda":
        teacher = teacher.to(torch.bfloat16)
    enc = encode(read_split(args.data_dir, t, "train"), load_tokenizer(Path(args.teacher)), 128)
    tc = teacher.config
    sup = SupernetStudent(StudentConfig(layers=6, hidden=tc.hidden_size, heads=tc.num_attention_heads,
                                        num_labels=t.num_labels), teacher).to(dev)
    rows = []
    result = {"benchmark": "bench_step", "device": device_name(), "torch": torch.__version__, "task": t.name,
              "batch": args.batch, "rows": rows}
    for mode in args.modes.split(","):
        for k in (int(g) for g in args.groups.split(",")):
            if mode == "eager" and k > 4:
                continue  # the eager step grows linearly with K: nothing to learn past 4
            students = [sup.extract(parse_spec(SPECS[i % len(SPECS)])).to(dev).train() for i in range(k)]
            kds = [KDLoss(teacher, s, t, KDConfig()).to(dev) for s in students]
            members = [Member(s, kd, list(kd.named_parameters())) for s, kd in zip(students, kds)]
            cfg = TrainConfig(lr=1e-4, batch_size=args.batch, steps=args.steps, log_every=args.steps)
            trainer = GroupTrainer(members, cfg, dev, shared=kds[0].teacher_outputs, graphs=mode != "eager",
                                   streams=mode.endswith("streams"), log=print)
            batches = Batcher(enc, args.batch, device=dev, fill=True,
                              widths=(32, 64, 128) if mode != "eager" else ())
            times: list[tuple[str, float]] = []
            orig = trainer._step

            def timed(batch, _orig=orig, _tr=trainer):
                before = dict(_tr.counts)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                _orig(batch)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                kind = "replay" if _tr.counts["replayed"] > before["replayed"] and \
                    _tr.counts["captured"] == before["captured"] else "setup"
                times.append((kind if mode != "eager" or len(times) else "setup", time.perf_counter() - t0))

            trainer._step = timed
            with GpuUtil() as util:
                t0 = time.perf_counter()
                outs = trainer.train(batches)
                wall = time.perf_counter() - t0
            steady = [s for kind, s in times if kind == "replay"] or [s for kind, s in times[1:]]
            ms = 1e3 * statistics.median(steady)
            row = {"mode": mode, "group": k, "steps": args.steps, "wall_s": wall, "ms_per_step": ms,
                   "ms_per_candidate_step": ms / k, "setup_s": sum(s for kind, s in times if kind == "setup"),
                   "captured": trainer.counts["captured"], "trainer_mode": trainer.mode,
                   "gpu_util_pct": util.mean, "failed": sum(o.failed is not None for o in outs)}
            rows.append(row)
            print(f"{mode:15} K={k:2}  {ms:7.2f} ms/step  {ms / k:6.2f} ms/candidate-step  setup {row['setup_s']:.2f}s "
                  f" util {util.mean or 0:.0f}%  captured {row['captured']}  ({trainer.mode})", flush=True)
            write_json(args.out, result)
            del trainer, members, kds, students
            if dev.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
