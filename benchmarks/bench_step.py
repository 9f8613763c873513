"""Milliseconds per KD training step of a 6-layer student (MiniLM-sized teacher), by batch size.

Real MRPC batches (length-bucketed), bf16 autocast, fused AdamW; the step includes the teacher's
forward, the student's forward and backward, the KD loss and the optimizer.  Writes JSON.

    PYTHONPATH=. python benchmarks/bench_step.py --data-dir DIR --teacher DIR
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--task", default="MRPC")
    ap.add_argument("--batches", default="32,64,128")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_step.json"))
    args = ap.parse_args()
    import torch
    from compiler import StudentConfig
    from exprsearch.distill import KDConfig, KDLoss, SupernetStudent
    from exprsearch.glue import read_split, task
    from exprsearch.parsing import parse_spec
    from exprsearch.teacher import load_teacher, load_tokenizer
    from exprsearch.tokens import Batcher, encode
    from exprsearch.train import TrainConfig, train_steps
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t = task(args.task)
    teacher = load_teacher(Path(args.teacher), t.num_labels).to(dev).eval()
    tok = load_tokenizer(Path(args.teacher))
    enc = encode(read_split(args.data_dir, t, "train"), tok, 128)
    tc = teacher.config
    sup = SupernetStudent(StudentConfig(layers=6, hidden=tc.hidden_size, heads=tc.num_attention_heads,
                                        num_labels=t.num_labels, vocab_size=tc.vocab_size), teacher).to(dev)
    student = sup.extract(parse_spec("linear1_1(gelu(linear1_1(x,wb1)),wb2)")).to(dev).train()
    rows = []
    for bs in (int(b) for b in args.batches.split(",")):
        batches = Batcher(enc, bs, device=dev)
        for kind, kd_cfg in (("kd", KDConfig()), ("ce_only", KDConfig(w_logits=0, w_hidden=0, w_task=1))):
            kd = KDLoss(teacher, student, t, kd_cfg).to(dev)
            cfg = TrainConfig(batch_size=bs, steps=args.steps, log_every=args.steps)
            fn = (lambda b: kd(student, b))
            train_steps(list(student.named_parameters()), fn, batches, TrainConfig(batch_size=bs, steps=10, log_every=10), dev)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            train_steps(list(student.named_parameters()), fn, batches, cfg, dev)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            ms = (time.perf_counter() - t0) / args.steps * 1e3
            rows.append({"batch": bs, "loss": kind, "ms_per_step": ms, "examples_per_s": bs * 1e3 / ms})
            print(json.dumps(rows[-1]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"benchmark": "bench_step", "device": str(dev), "task": t.name,
                                          "torch": torch.__version__, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
