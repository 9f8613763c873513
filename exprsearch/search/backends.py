"""candidate specs --> evaluation results, on one process, a process pool, or a Ray cluster.

Input: an ``EvalConfig`` and batches of (key, spec text).  Output: ``{key: result dict}`` for each
batch.  A batch is cut into groups of ``cfg.group`` candidates that one worker trains together
(``Evaluator.evaluate_many``).  Invariants: each worker builds its ``Evaluator`` (teachers, data,
warm supernets) once; results come back to the caller -- the store's one writer; the groups do
not depend on the backend or the worker count and evaluation is seeded, so every backend gives
the same results for the same seed; a worker that fails or dies is replaced and its candidates
are retried one by one (``max_retries``), then reported as failed.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Any, Callable

from exprsearch.errors import ConfigError
from exprsearch.lang.parsing import parse_spec

__all__ = ["Backend", "InlineBackend", "PoolBackend", "RayBackend", "make_backend"]

Batch = list[tuple[str, str]]
OnResult = Callable[[str, dict[str, Any]], None]


def _noop(key: str, r: dict[str, Any]) -> None:
    pass


class Backend:
    capacity = 1

    def run(self, batch: Batch, on_result: OnResult = _noop, seed: int | None = None) -> dict[str, dict[str, Any]]:
        """Evaluate a batch (with training seed ``seed``; None: the config's); ``on_result(key,
        result)`` is called as each result arrives (the caller commits it there, so a crash loses
        no finished evaluation)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def _failed(key: str, reason: str) -> dict[str, Any]:
    return {"key": key, "spec": key, "status": "failed", "reason": reason, "metrics": {}, "score": None}


class InlineBackend(Backend):
    """Evaluate in this process (the default; what stage 3 and the CPU presets use)."""

    def __init__(self, cfg: Any, log: Any = print) -> None:
        from exprsearch.kd.evaluate import Evaluator
        self.evaluator = Evaluator(cfg, log=log)

    def run(self, batch: Batch, on_result: OnResult = _noop, seed: int | None = None) -> dict[str, dict[str, Any]]:
        out = {}
        for chunk in _chunks(list(batch), self.evaluator.cfg.group):  # a group's results are committed together
            for key, r in _evaluate(self.evaluator, chunk, "inline", seed):
                out[key] = r
                on_result(key, r)
        return out


def _evaluate(ev: Any, items: Batch, worker: str, seed: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Evaluate (key, spec) items together (one group); results keyed, tagged with the worker."""
    results = ev.evaluate_many([parse_spec(spec) for _, spec in items], seed=seed)  # text crossed a process boundary
    return [(key, {**r.as_dict(), "key": key, "worker": worker}) for (key, _), r in zip(items, results)]


def _chunks(batch: Batch, size: int) -> list[Batch]:
    """``batch`` cut into consecutive groups of ``size``: the same groups whatever the backend or
    the number of workers, so a candidate trains with the same group-mates (and the same random
    draws) everywhere.

    >>> [len(c) for c in _chunks([("k", "s")] * 10, 4)]
    [4, 4, 2]
    """
    size = max(1, size)
    return [batch[i:i + size] for i in range(0, len(batch), size)]


_WORKER: Any = None


def _init_worker(cfg: Any, ready: Any) -> None:
    global _WORKER
    from exprsearch.kd.evaluate import Evaluator
    _WORKER = Evaluator(cfg, log=lambda m: None)
    with ready.get_lock():  # the pool is ready when every worker holds its Evaluator
        ready.value += 1


def _work(items: Batch, seed: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    return _evaluate(_WORKER, items, f"pid{os.getpid()}", seed)


class PoolBackend(Backend):
    """N worker processes on this machine (they share the GPU: their CPU-side work overlaps).

    A worker that raises fails only its own group's first try; a worker that dies (killed by the
    OS, out of memory, a CUDA fault) breaks the whole pool, so the pool is restarted and every
    group then in flight is retried.  Retries run one candidate at a time, alone in the pool, so
    a candidate that kills its worker again is the one reported failed, never its group-mates.
    """

    def __init__(self, cfg: Any, workers: int, log: Any = print, max_retries: int = 1,
                 start_timeout: float = 1800.0) -> None:
        from exprsearch.kd.evaluate import Evaluator
        Evaluator(cfg, log=log)  # fill the caches (teachers, tokens, supernets) once, here
        self.cfg, self.capacity, self.retries, self.log = cfg, workers, max_retries, log
        self.start_timeout = start_timeout
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        """A pool whose every worker holds its Evaluator: start-up is not search time."""
        ctx = mp.get_context("spawn")
        ready = ctx.Value("i", 0)
        pool = ProcessPoolExecutor(self.capacity, mp_context=ctx, initializer=_init_worker,
                                   initargs=(replace(self.cfg, setup_workers=1), ready))  # caches are warm
        probes = [pool.submit(os.getpid) for _ in range(self.capacity)]  # workers spawn on demand
        deadline = time.monotonic() + self.start_timeout
        while ready.value < self.capacity:
            broken = any(f.done() and f.exception() is not None for f in probes)
            if broken or time.monotonic() > deadline:
                pool.shutdown(wait=False, cancel_futures=True)
                why = "failed to start" if broken else f"did not start within {self.start_timeout:.0f}s"
                raise ConfigError(f"the {self.capacity} worker processes {why} (run with --workers 1 to see the error)")
            time.sleep(0.1)
        return pool

    def _restart(self, why: str) -> None:
        self.log(f"a worker process died ({why}): restarting the pool of {self.capacity}")
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._start()

    def _submit(self, chunk: Batch, seed: int | None) -> Future:
        try:
            return self.pool.submit(_work, chunk, seed)
        except BrokenProcessPool as err:  # died while idle: noticed at the next submit
            self._restart(str(err))
            return self.pool.submit(_work, chunk, seed)

    def run(self, batch: Batch, on_result: OnResult = _noop, seed: int | None = None) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}

        def deliver(done: list[tuple[str, dict[str, Any]]]) -> None:
            for key, r in done:
                out[key] = r
                on_result(key, r)

        retry: list[tuple[tuple[str, str], BaseException]] = []
        futures = {self._submit(chunk, seed): chunk for chunk in _chunks(list(batch), self.cfg.group)}
        broken = ""
        for fut in as_completed(futures):  # hand results over as they finish, whatever their order
            try:
                done = fut.result()
            except Exception as err:  # noqa: BLE001 - a worker's error or death fails (then retries) its group
                broken = broken or (str(err) if isinstance(err, BrokenProcessPool) else "")
                retry += [(item, err) for item in futures[fut]]
            else:
                deliver(done)  # outside the try: the caller's own errors are not worker errors
        if broken:
            self._restart(broken)
        for item, err in retry:  # one at a time: a failure is this candidate's own
            deliver(self._retry(item, err, seed))
        return out

    def _retry(self, item: tuple[str, str], err: BaseException, seed: int | None) -> list[tuple[str, dict[str, Any]]]:
        for _ in range(self.retries):
            try:
                return self._submit([item], seed).result()
            except BrokenProcessPool as e:
                err = e
                self._restart(f"{e}; while evaluating {item[0]} alone")
            except Exception as e:  # noqa: BLE001
                err = e
        reason = ("worker process died (killed by the OS? out of memory?)" if isinstance(err, BrokenProcessPool)
                  else f"worker error: {type(err).__name__}: {err}")
        return [(item[0], _failed(item[0], reason))]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)  # after Ctrl-C: queued groups are dropped


class RayBackend(Backend):
    """Ray actors, each holding an Evaluator; fractional or whole GPUs per actor."""

    def __init__(self, cfg: Any, workers: int, address: str | None = None, gpus_per_worker: float = 0.0,
                 cpus_per_worker: float = 1.0, max_retries: int = 2, log: Any = print) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("the Ray backend needs Ray: pip install 'exprsearch[ray]'") from None
        from exprsearch.kd.evaluate import Evaluator
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

            def evaluate(self, items: Batch, seed: int | None = None) -> list[tuple[str, dict[str, Any]]]:
                return _evaluate(self.ev, items, f"ray-pid{os.getpid()}", seed)

        self.actors = [_Actor.remote(replace(cfg, setup_workers=1)) for _ in range(workers)]  # caches are warm
        self.capacity, self.group = workers, cfg.group

    def run(self, batch: Batch, on_result: OnResult = _noop, seed: int | None = None) -> dict[str, dict[str, Any]]:
        refs = {self.actors[i % len(self.actors)].evaluate.remote(chunk, seed): chunk
                for i, chunk in enumerate(_chunks(list(batch), self.group))}
        out: dict[str, dict[str, Any]] = {}
        remaining = list(refs)
        while remaining:  # stream results back as chunks finish
            ready, remaining = self.ray.wait(remaining, num_returns=1)
            for ref in ready:
                try:
                    done = self.ray.get(ref)
                except Exception as err:  # noqa: BLE001 - actor died past its retries
                    done = [(k, _failed(k, f"ray worker error: {type(err).__name__}: {err}")) for k, _ in refs[ref]]
                for key, r in done:
                    out[key] = r
                    on_result(key, r)
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
