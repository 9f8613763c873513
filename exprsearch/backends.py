"""candidate specs --> evaluation results, on one process, a process pool, or a Ray cluster.

Input: an ``EvalConfig`` and batches of (key, spec text).  Output: ``{key: result dict}`` for each
batch.  Invariants: each worker builds its ``Evaluator`` (teachers, data, warm supernets) once;
results come back to the caller -- the store's one writer; a batch's results do not depend on
which worker ran what (evaluation is seeded per candidate), so every backend gives the same
results for the same seed; a worker that dies is replaced and its candidates are retried
(``max_retries``), then reported as failed.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from typing import Any, Callable

from .errors import ConfigError

__all__ = ["Backend", "InlineBackend", "PoolBackend", "RayBackend", "make_backend"]

Batch = list[tuple[str, str]]
OnResult = Callable[[str, dict[str, Any]], None]


def _noop(key: str, r: dict[str, Any]) -> None:
    pass


class Backend:
    capacity = 1

    def run(self, batch: Batch, on_result: OnResult = _noop) -> dict[str, dict[str, Any]]:
        """Evaluate a batch; ``on_result(key, result)`` is called as each result arrives (the
        caller commits it there, so a crash loses no finished evaluation)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def _failed(key: str, reason: str) -> dict[str, Any]:
    return {"key": key, "spec": key, "status": "failed", "reason": reason, "metrics": {}, "score": None}


class InlineBackend(Backend):
    """Evaluate in this process (the default; what stage 3 and the CPU presets use)."""

    def __init__(self, cfg: Any, log: Any = print) -> None:
        from .evaluate import Evaluator
        self.evaluator = Evaluator(cfg, log=log)

    def run(self, batch: Batch, on_result: OnResult = _noop) -> dict[str, dict[str, Any]]:
        out = {}
        for key, spec in batch:
            out[key] = {**self.evaluator.evaluate(spec).as_dict(), "key": key, "worker": "inline"}
            on_result(key, out[key])
        return out


_WORKER: Any = None


def _init_worker(cfg: Any) -> None:
    global _WORKER
    from .evaluate import Evaluator
    _WORKER = Evaluator(cfg, log=lambda m: None)


def _work(item: tuple[str, str]) -> tuple[str, dict[str, Any]]:
    key, spec = item
    return key, {**_WORKER.evaluate(spec).as_dict(), "key": key, "worker": f"pid{os.getpid()}"}


class PoolBackend(Backend):
    """N worker processes on this machine (they share the GPU: their CPU-side work overlaps)."""

    def __init__(self, cfg: Any, workers: int, log: Any = print, max_retries: int = 1) -> None:
        from .evaluate import Evaluator
        Evaluator(cfg, log=log)  # fill the caches (teachers, tokens, supernets) once, here
        self.cfg, self.capacity, self.retries = cfg, workers, max_retries
        self.pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(cfg,))

    def run(self, batch: Batch, on_result: OnResult = _noop) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        todo = list(batch)
        for attempt in range(self.retries + 1):
            pending = [(item, self.pool.apply_async(_work, (item,))) for item in todo]
            todo = []
            while pending:  # hand results over as they finish, whatever their order
                still = []
                for item, res in pending:
                    if not res.ready():
                        still.append((item, res))
                        continue
                    try:
                        key, r = res.get()
                    except Exception as err:  # noqa: BLE001 - a worker crash fails (then retries) one candidate
                        if attempt < self.retries:
                            todo.append(item)
                            continue
                        key, r = item[0], _failed(item[0], f"worker error: {type(err).__name__}: {err}")
                    out[key] = r
                    on_result(key, r)
                pending = still
                if pending:
                    pending[0][1].wait(0.05)
            if not todo:
                break
        return out

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


class RayBackend(Backend):
    """Ray actors, each holding an Evaluator; fractional or whole GPUs per actor."""

    def __init__(self, cfg: Any, workers: int, address: str | None = None, gpus_per_worker: float = 0.0,
                 cpus_per_worker: float = 1.0, max_retries: int = 2, log: Any = print) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("the Ray backend needs Ray: pip install 'exprsearch[ray]'") from None
        from .evaluate import Evaluator
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, num_cpus=None if address else max(workers, 1) * int(max(1, cpus_per_worker)),
                     include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        Evaluator(cfg, log=log)  # fill the shared caches once before the actors start

        @ray.remote(num_gpus=gpus_per_worker, num_cpus=cpus_per_worker, max_restarts=max_retries,
                    max_task_retries=max_retries)
        class _Actor:
            def __init__(self, c: Any) -> None:
                self.ev = Evaluator(c, log=lambda m: None)

            def evaluate(self, key: str, spec: str) -> dict[str, Any]:
                return {**self.ev.evaluate(spec).as_dict(), "key": key, "worker": f"ray-pid{os.getpid()}"}

        self.actors = [_Actor.remote(cfg) for _ in range(workers)]
        self.capacity = workers

    def run(self, batch: Batch, on_result: OnResult = _noop) -> dict[str, dict[str, Any]]:
        refs = {self.actors[i % len(self.actors)].evaluate.remote(key, spec): key
                for i, (key, spec) in enumerate(batch)}
        out: dict[str, dict[str, Any]] = {}
        remaining = list(refs)
        while remaining:  # stream results back as they finish
            done, remaining = self.ray.wait(remaining, num_returns=1)
            for ref in done:
                key = refs[ref]
                try:
                    out[key] = self.ray.get(ref)
                except Exception as err:  # noqa: BLE001 - actor died past its retries
                    out[key] = _failed(key, f"ray worker error: {type(err).__name__}: {err}")
                on_result(key, out[key])
        return out

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)


def make_backend(name: str, cfg: Any, workers: int = 1, address: str | None = None,
                 gpus_per_worker: float = 0.0, log: Any = print) -> Backend:
    if name == "local":
        return InlineBackend(cfg, log) if workers <= 1 else PoolBackend(cfg, workers, log)
    if name == "ray":
        return RayBackend(cfg, workers, address, gpus_per_worker, log=log)
    raise ConfigError(f"unknown backend {name!r}; choose local or ray")
