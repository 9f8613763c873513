"""Shared plumbing of the GLUE benchmarks: the KD protocol options, the EvalConfig they make,
a timestamped log and the JSON result file (written whole, after every step that adds to it)."""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def glue_parser(doc: str | None, *, tasks: str, warmup_steps: int, out: Path, batch_size: int = 128,
                lr: float = 2e-4, teacher_batch: int = 64) -> argparse.ArgumentParser:
    """The options every GLUE benchmark shares (the bench_kd protocol by default)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--tasks", default=tasks)
    ap.add_argument("--task-steps", default="MRPC=75,RTE=50,CoLA=100,SST-2=150")
    ap.add_argument("--warmup-steps", type=int, default=warmup_steps)
    ap.add_argument("--teacher-epochs", type=float, default=2.0)
    ap.add_argument("--teacher-batch", type=int, default=teacher_batch)
    ap.add_argument("--batch-size", type=int, default=batch_size)
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--max-train", type=int, default=None, help="training (and dev) rows per task (smoke runs)")
    ap.add_argument("--cache-dir", default="/tmp/exprsearch-cache")
    ap.add_argument("--out", default=str(out))
    return ap


def eval_config(args: argparse.Namespace, **extra: Any) -> Any:
    from exprsearch.kd.evaluate import EvalConfig
    return EvalConfig(tasks=tuple(args.tasks.split(",")), data_dir=args.data_dir, teacher=args.teacher,
                      task_steps=args.task_steps, warmup_steps=args.warmup_steps, teacher_epochs=args.teacher_epochs,
                      teacher_batch=args.teacher_batch, batch_size=args.batch_size, lr=args.lr,
                      max_train=args.max_train, max_dev=args.max_train, cache_dir=args.cache_dir, **extra)


class Log:
    """print + keep, with a time stamp, for the result file."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, m: str) -> None:
        self.lines.append(f"{time.strftime('%H:%M:%S')} {m}")
        print(m, flush=True)


def device_name() -> str:
    import torch
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def write_json(path: str | Path, result: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2, default=str) + "\n")


class GpuUtil:
    """``with GpuUtil() as u: ...`` samples the GPU's utilisation (NVML, % of time a kernel ran)
    every ``every`` seconds; ``u.mean`` is the average (None without a GPU or NVML)."""

    def __init__(self, every: float = 0.1) -> None:
        self.every, self.samples = every, []
        self._stop = threading.Event()

    def _run(self) -> None:
        import torch
        while not self._stop.wait(self.every):
            try:
                self.samples.append(float(torch.cuda.utilization()))
            except Exception:  # noqa: BLE001 - no NVML: no numbers, never a failed benchmark
                return

    def __enter__(self) -> "GpuUtil":
        import torch
        if torch.cuda.is_available():
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None
