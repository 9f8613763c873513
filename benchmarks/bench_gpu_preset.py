"""`exprsearch search --preset gpu` on this machine's GPU, as a new user runs it (issue 22).

Starts the search (no --group / --workers: the preset sizes itself to the card), lets it
evaluate for ``--seconds`` after the first candidate is stored, stops it with Ctrl-C, and
measures from the store and from nvidia-smi: candidates per hour (stored candidates over the
time between the first and the last), failed candidates, GPU busy % (mean of 1 s samples over
that window), peak memory of each process, the sizing line of the log.  Then ``--fault-check``
evaluates a few candidates in this process with an out-of-memory fault injected inside a real
CUDA-graph capture (an allocation larger than the card), and reports that the group shrank, no
candidate failed and the CUDA generator still draws.  Writes one JSON per card
(``bench_gpu_preset_<card>.json``) with the device named.

    PYTHONPATH=. python benchmarks/bench_gpu_preset.py --data-dir GLUE --teacher MINILM [--seconds 300]
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import device_name, write_json

RESULTS = Path(__file__).parent / "results"


class Smi:
    """nvidia-smi sampled every second: GPU busy % and each process's memory (peak)."""

    def __init__(self) -> None:
        self.busy: list[tuple[float, float]] = []
        self.peak: dict[str, float] = {}
        self.total_mib = None
        self._stop = threading.Event()

    def _query(self, what: str, kind: str = "gpu") -> list[list[str]]:
        out = subprocess.run(["nvidia-smi", f"--query-{kind}={what}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
        return [[x.strip() for x in line.split(",")] for line in out.strip().splitlines() if line.strip()]

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                util, used, total = self._query("utilization.gpu,memory.used,memory.total")[0]
                self.busy.append((time.time(), float(util)))
                self.total_mib = float(total)
                for pid, mib in self._query("pid,used_memory", "compute-apps"):
                    self.peak[pid] = max(self.peak.get(pid, 0.0), float(mib))
            except Exception:  # noqa: BLE001 - no nvidia-smi: the numbers are left out, never a failure
                return

    def __enter__(self) -> "Smi":
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def __exit__(self, *a: object) -> None:
        self._stop.set()


def store_rows(path: Path) -> list[tuple[float, str]]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return [(r[0], r[1]) for r in db.execute("SELECT created, status FROM candidates ORDER BY created")]
    except sqlite3.Error:
        return []
    finally:
        db.close()


def run_search(args: argparse.Namespace, work: Path, smi: Smi) -> dict:
    store, log = work / "gpu.db", work / "search.log"
    cmd = [sys.executable, "-m", "exprsearch", "search", "--preset", "gpu", "--data-dir", args.data_dir,
           "--teacher", args.teacher, "--cache-dir", args.cache_dir, "--store", str(store)] + args.extra
    t0 = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    first = None
    while proc.poll() is None:
        time.sleep(5)
        rows = store_rows(store)
        if rows and first is None:
            first = time.time()
            print(f"first candidate stored after {first - t0:.0f}s", flush=True)
        if first is not None and time.time() - first >= args.seconds:
            break
        if time.time() - t0 > args.seconds + args.setup_limit:
            print("setup took too long: stopping", flush=True)
            break
    stopped = proc.poll() is None
    if stopped:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text(errors="replace")
    rows = store_rows(store)
    # the clock starts when the first groups are stored: candidates stored within 5 s of the first
    # belong to groups that ran before it, so only later ones count, and only over >= 4 minutes
    t0_rows = rows[0][0] if rows else 0.0
    later = [r for r in rows if r[0] > t0_rows + 5.0]
    span = later[-1][0] - t0_rows if later else 0.0
    busy = [u for t, u in smi.busy if rows and rows[0][0] <= t <= rows[-1][0]]
    sized = [line for line in text.splitlines() if "sized to the GPU" in line or "warning:" in line]
    return {
        "command": " ".join(cmd[1:]),
        "exit_code": proc.returncode, "stopped_by_benchmark": stopped,
        "setup_seconds": (first - t0) if first else None,
        "candidates": len(rows), "failed": sum(s == "failed" for _, s in rows),
        "statuses": {s: sum(x == s for _, x in rows) for s in {x for _, x in rows}},
        "window_seconds": span, "counted": len(later),
        "candidates_per_hour": 3600 * len(later) / span if span >= 240 else None,  # a rate only over minutes
        "gpu_busy_percent": sum(busy) / len(busy) if busy else None,
        "peak_memory_mib_per_process": dict(sorted(smi.peak.items())),
        "gpu_memory_total_mib": smi.total_mib,
        "sizing": sized,
        "log_tail": text.splitlines()[-25:],
    }


def fault_check(args: argparse.Namespace) -> dict:
    """Out of memory inside a real capture.  On CUDA its graph pool stays allocated, so the evaluator
    raises ``GraphMemoryLost`` (the pool backend then replaces the worker with groups half the size:
    tests/test_recovery.py); here, in one process, that loud error is what is checked."""
    import torch

    from exprsearch.engine import faults
    from exprsearch.kd.evaluate import EvalConfig, Evaluator
    from exprsearch.lang.parsing import parse_spec
    from exprsearch.search.presets import SEARCH_PRESETS
    lines: list[str] = []
    cfg = EvalConfig(**{**SEARCH_PRESETS["gpu"][1], "tasks": ("MRPC",), "data_dir": args.data_dir,
                        "teacher": args.teacher, "cache_dir": args.cache_dir, "group": 8, "latency_batch": 0})
    ev = Evaluator(cfg, log=lines.append)
    specs = [parse_spec(s) for s in ("linear1_1(gelu(linear1_1(x,wb1)),wb2)", "linear1_2(relu(linear1_2(x,wb1)),wb2)",
                                     "linear1_2(gelu(linear1_2(x,wb1)),wb2)", "linear1_3(tanh(linear1_3(x,wb1)),wb2)")] * 2
    clean = ev.evaluate_many(specs[:4])
    from exprsearch.errors import GraphMemoryLost
    faults.inject("capture", times=1, kind="oom")
    t0 = time.time()
    try:
        res = ev.evaluate_many(specs)
    except GraphMemoryLost as err:  # the designed outcome on CUDA: loud, no candidate stored as failed
        return {"raised": "GraphMemoryLost", "message": str(err), "clean_statuses": [r.status for r in clean],
                "seconds": time.time() - t0, "log": lines[-10:]}
    draw = float(torch.rand(1, device=ev.device))
    return {"group_before": 8, "group_after": ev.group, "statuses": [r.status for r in res],
            "scores_equal_clean": [r.score for r in res[:4]] == [r.score for r in clean],
            "rng_draws_after": 0.0 <= draw < 1.0, "seconds": time.time() - t0, "log": lines[-10:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--cache-dir", default="/tmp/exprsearch-cache")
    ap.add_argument("--seconds", type=float, default=300, help="evaluation time after the first stored candidate")
    ap.add_argument("--setup-limit", type=float, default=240, help="seconds allowed before the first candidate")
    ap.add_argument("--work", default="/tmp/bench-gpu-preset")
    ap.add_argument("--fault-check", action="store_true")
    ap.add_argument("--fault-check-only", action="store_true", help="add the fault check to --out's JSON, no search")
    ap.add_argument("--out", default=None, help="JSON file (default results/bench_gpu_preset_<card>.json)")
    ap.add_argument("extra", nargs="*", help="more search options (after --)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    card = device_name()
    out = Path(args.out) if args.out else RESULTS / f"bench_gpu_preset_{re.sub(r'[^A-Za-z0-9]+', '_', card)}.json"
    if args.fault_check_only:
        import json
        result = json.loads(out.read_text()) if out.exists() else {"device": card}
    else:
        result = {"device": card, "date": time.strftime("%Y-%m-%d"), "seconds_asked": args.seconds}
        with Smi() as smi:
            result["search"] = run_search(args, work, smi)
        write_json(out, result)
        print({k: v for k, v in result["search"].items() if k != "log_tail"}, flush=True)
    if args.fault_check or args.fault_check_only:
        result["fault_check"] = fault_check(args)
        write_json(out, result)
        print(result["fault_check"], flush=True)


if __name__ == "__main__":
    main()
