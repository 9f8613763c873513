"""What a user gets from ``exprsearch distill --preset cpu`` (issue 30): wall time, the directory,
and the shipped student's CPU latency against its teacher's, timed in the same run.

Runs ``exprsearch distill SPEC --preset cpu --task SST-2 -o DIR`` in a fresh cache (teacher
fine-tune, warm-up, the final protocol, the directory, ONNX and card all included), lists the
directory's files and sizes, then loads the shipped student the way a user does
(``AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)``) beside the
fine-tuned teacher and times both on the CPU (batch 1 x 128 tokens; rounds alternating between the
two, median and spread: ``compiler.timing.paired_latency``).  JSON: results/bench_ship.json.

    PYTHONPATH=. python benchmarks/bench_ship.py --data-dir GLUE [--teacher DIR]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Log, write_json

OUT = Path(__file__).parent / "results" / "bench_ship.json"
SPEC = "linear1_2(mul(gelu(linear1_2(x,wb1)),linear1_2(x,wb3)),wb2)"  # a GEGLU student


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--teacher", default=None)
    ap.add_argument("--spec", default=SPEC)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    import torch

    from exprsearch.compiler.timing import paired_latency
    from exprsearch.kd.teacher import load_teacher
    from exprsearch.engine.threads import busy_elsewhere
    log = Log()
    work = Path(tempfile.mkdtemp(prefix="bench-ship-"))
    try:
        out = work / "student"
        cmd = [sys.executable, "-m", "exprsearch", "distill", args.spec, "--preset", "cpu", "--task", "SST-2",
               "-o", str(out), "--data-dir", args.data_dir, "--cache-dir", str(work / "cache"), "--json"]
        if args.teacher:
            cmd += ["--teacher", args.teacher]
        load = busy_elsewhere(1.0)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        files = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
        log(f"distill --preset cpu: {seconds:.0f}s, {sum(files.values()) / 1e6:.1f} MB in {len(files)} files")
        from transformers import AutoModelForSequenceClassification
        student = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True).eval()
        teacher_dir = next((work / "cache" / "teachers").glob("SST-2-*"))
        teacher = load_teacher(teacher_dir).eval()
        lat = paired_latency(student, teacher, "cpu", 1, 128, repeats=args.repeats)
        log(f"CPU batch 1 x 128: student {lat.ms:.1f} ms ± {lat.spread_ms:.1f}, teacher {lat.ref_ms:.1f} ms; "
            f"student / teacher {lat.rel:.2f} ± {lat.rel_spread:.2f}")
        params = {"student": sum(p.numel() for p in student.parameters()),
                  "teacher": sum(p.numel() for p in teacher.parameters())}
        write_json(args.out, {"benchmark": "bench_ship", "device": "cpu", "torch_threads": torch.get_num_threads(),
                              "load_before": load, "spec": args.spec, "distill_seconds": seconds,
                              "command": " ".join(cmd[1:]), "files": files, "bytes": sum(files.values()),
                              "latency": lat.as_dict(), "params": params,
                              "summary": json.loads(proc.stdout)[0].get("student", {}).get("mean"), "log": log.lines})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
