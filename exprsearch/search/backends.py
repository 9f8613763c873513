"""candidate specs --> evaluation results, on one process, a process pool, or a Ray cluster.

Input: an ``EvalConfig`` and batches of (key, parsed ``ModelSpec``; specs pickle across processes).
Output: ``{key: result dict}`` for each batch.  A batch is cut into groups that one worker trains
together (``Evaluator.evaluate_many``).  ``make_backend`` prepares every task once in this process,
then sizes the work to the device (``Evaluator.size``: on a GPU, group size, worker count and CUDA
graphs from its free memory; explicit ``--group``/``--workers`` win).  Invariants: each worker
builds its ``Evaluator`` (teachers, data, warm supernets) once; results come back to the caller --
the store's one writer; evaluation is seeded and (dropout 0) a result does not depend on its
group, so every backend gives the same results for the same seed.  A worker that dies is replaced
and its candidates are retried one by one (``max_retries``), then reported as failed; a worker
that raises (a bug, a device fault: never a candidate's failure, which comes back as a result) is
replaced and its group retried one by one once; raising again stops the run with its error.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from exprsearch.errors import ConfigError, GraphMemoryLost
from exprsearch.engine.processes import how_it_ended, pool_processes
from exprsearch.lang.expr import ModelSpec

__all__ = ["Backend", "InlineBackend", "PoolBackend", "RayBackend", "make_backend"]

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

    from exprsearch.kd.evaluate import Evaluator
    from exprsearch.kd.protocol import EvalConfig

Batch = list[tuple[str, ModelSpec]]
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
    """Evaluate in this process (one worker; what stage 3 and the CPU presets use)."""

    def __init__(self, cfg: EvalConfig, log: Callable[[str], None] = print, evaluator: Evaluator | None = None
                 ) -> None:
        from exprsearch.kd.evaluate import Evaluator
        self.evaluator = evaluator or Evaluator(cfg, log=log)

    def run(self, batch: Batch, on_result: OnResult = _noop, seed: int | None = None) -> dict[str, dict[str, Any]]:
        out = {}
        for chunk in _chunks(list(batch), self.evaluator.group):  # a group's results are committed together
            for key, r in _evaluate(self.evaluator, chunk, "inline", seed):
                out[key] = r
                on_result(key, r)
        return out


def _evaluate(ev: Evaluator, items: Batch, worker: str, seed: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Evaluate (key, spec) items together (one group); results keyed, tagged with the worker."""
    results = ev.evaluate_many([spec for _, spec in items], seed=seed)
    return [(key, {**r.as_dict(), "key": key, "worker": worker}) for (key, _), r in zip(items, results)]


def _chunks(batch: Batch, size: int) -> list[Batch]:
    """``batch`` cut into consecutive groups of ``size``: the same groups whatever the backend or
    the number of workers, so a candidate trains with the same group-mates (and the same random
    draws) everywhere.

    >>> [len(c) for c in _chunks([("k", None)] * 10, 4)]
    [4, 4, 2]
    """
    size = max(1, size)
    return [batch[i:i + size] for i in range(0, len(batch), size)]


_WORKER: Evaluator | None = None


def _init_worker(cfg: EvalConfig, ready: Synchronized[int], threads: int) -> None:
    global _WORKER
    import torch

    from exprsearch.kd.evaluate import Evaluator
    torch.set_num_threads(threads)  # the parent's: CPU reductions in the same order, the same results
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it closes the pool
    _WORKER = Evaluator(cfg, log=lambda m: None)
    with ready.get_lock():  # the pool is ready when every worker holds its Evaluator
        ready.value += 1


def _work(items: Batch, seed: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    assert _WORKER is not None  # the pool's initializer (_init_worker) made it
    return _evaluate(_WORKER, items, f"pid{os.getpid()}", seed)


def _torch_threads() -> int:
    import torch
    return torch.get_num_threads()


class PoolBackend(Backend):
    """N worker processes on this machine (they share the GPU: their CPU-side work overlaps).

    A worker that dies (killed by the OS, out of host memory, a CUDA fault) breaks the whole pool,
    and one that raises may hold a poisoned device: either way the pool is restarted and every
    group then in flight is retried, one candidate at a time, alone in the pool, so a candidate
    that kills its worker again is the one reported failed, never its group-mates; a retry that
    raises again stops the run with that error (it is not the candidate's).  ``cfg.group`` must be
    set (``make_backend`` sizes it); ``warm``: the caches are filled already.
    """

    def __init__(self, cfg: EvalConfig, workers: int, log: Callable[[str], None] = print, max_retries: int = 1,
                 start_timeout: float = 1800.0, warm: bool = False) -> None:
        from exprsearch.kd.evaluate import CPU_GROUP, Evaluator
        if not warm:
            Evaluator(cfg, log=log)  # fill the caches (teachers, tokens, supernets) once, here
        cfg = replace(cfg, group=cfg.group or CPU_GROUP)
        self.cfg, self.capacity, self.retries, self.log = cfg, workers, max_retries, log
        self.start_timeout = start_timeout
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        """A pool whose every worker holds its Evaluator: start-up is not search time."""
        from exprsearch.engine.threads import pick
        ctx = mp.get_context("spawn")
        ready = ctx.Value("i", 0)
        threads = pick(self.cfg.threads, self.capacity)  # workers x threads <= the free cores
        self.log(f"{self.capacity} worker processes, {threads.count} CPU thread(s) each ({threads.why})")
        pool = ProcessPoolExecutor(self.capacity, mp_context=ctx, initializer=_init_worker,
                                   initargs=(replace(self.cfg, setup_workers=1, threads=threads.count), ready,
                                             threads.count))  # caches are warm
        probes = [pool.submit(os.getpid) for _ in range(self.capacity)]  # workers spawn on demand
        deadline = time.monotonic() + self.start_timeout
        while ready.value < self.capacity:
            broken = any(f.done() and f.exception() is not None for f in probes)
            if broken or time.monotonic() > deadline:
                pool.shutdown(wait=False, cancel_futures=True)
                why = "failed to start" if broken else f"did not start within {self.start_timeout:.0f}s"
                raise ConfigError(f"the {self.capacity} worker processes {why} (run with --workers 1 to see the error)")
            time.sleep(0.1)
        self._procs = pool_processes(pool)
        return pool

    def _shrink(self) -> None:
        """Halve the workers' group (at 1: no CUDA graphs) after a capture ran out of memory."""
        old = self.cfg
        self.cfg = (replace(old, group=max(1, old.group // 2)) if old.group > 1 else replace(old, cuda_graphs=False))
        self.log(f"a CUDA-graph capture ran out of memory: groups of {self.cfg.group}"
                 + ("" if self.cfg.cuda_graphs else " without CUDA graphs") + " from now on, in fresh workers")

    def _restart(self, why: str) -> None:
        if "terminated abruptly" in why:  # BrokenProcessPool's words: say how the process ended
            why = f"it {how_it_ended(self._procs)}"
        self.log(f"a worker process died or failed ({why}): restarting the pool of {self.capacity}")
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

        retry: list[tuple[tuple[str, ModelSpec], BaseException]] = []
        lost: Batch = []  # groups whose graph capture ran out of memory: again, smaller, in fresh workers
        futures = {self._submit(chunk, seed): chunk for chunk in _chunks(list(batch), self.cfg.group)}
        broken = ""
        for fut in as_completed(futures):  # hand results over as they finish, whatever their order
            try:
                done = fut.result()
            except GraphMemoryLost as err:
                broken = broken or f"it raised {type(err).__name__}: {err}"
                lost += futures[fut]
            except Exception as err:  # noqa: BLE001 - a worker's error or death: its group is retried
                broken = broken or (str(err) if isinstance(err, BrokenProcessPool) else
                                    f"it raised {type(err).__name__}: {err}")
                retry += [(item, err) for item in futures[fut]]
            else:
                deliver(done)  # outside the try: the caller's own errors are not worker errors
        if lost:
            self._shrink()
        if broken:
            self._restart(broken)
        if lost:
            self.run(lost, on_result=lambda key, r: deliver([(key, r)]), seed=seed)
        for item, error in retry:  # one at a time: a failure is this candidate's own
            deliver(self._retry(item, error, seed))
        return out

    def _retry(self, item: tuple[str, ModelSpec], err: BaseException, seed: int | None
               ) -> list[tuple[str, dict[str, Any]]]:
        for _ in range(self.retries):
            try:
                return self._submit([item], seed).result()
            except BrokenProcessPool as e:
                err = e
                self._restart(f"{e}; while evaluating {item[0]} alone")
            # any other exception: raised again alone, in a fresh process -- ours, not the candidate's
        if not isinstance(err, BrokenProcessPool):
            raise err
        return [(item[0], _failed(item[0], "worker process died (killed by the OS? out of memory?)"))]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)  # after Ctrl-C: queued groups are dropped


class RayBackend(Backend):
    """Ray actors, each holding an Evaluator; fractional or whole GPUs per actor."""

    def __init__(self, cfg: EvalConfig, workers: int, address: str | None = None, gpus_per_worker: float = 0.0,
                 cpus_per_worker: float = 1.0, max_retries: int = 2, log: Callable[[str], None] = print) -> None:
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
            def __init__(self, c: EvalConfig) -> None:
                self.ev = Evaluator(c, log=lambda m: None)

            def evaluate(self, items: Batch, seed: int | None = None) -> list[tuple[str, dict[str, Any]]]:
                return _evaluate(self.ev, items, f"ray-pid{os.getpid()}", seed)

        from exprsearch.kd.evaluate import CPU_GROUP
        cfg = replace(cfg, setup_workers=1, group=cfg.group or CPU_GROUP)  # caches are warm; not sized: --group
        actor: Any = _Actor  # a Ray actor class: .remote() starts one
        self.actors = [actor.remote(cfg) for _ in range(workers)]
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
                except self.ray.exceptions.RayTaskError:
                    raise  # the evaluator raised: a bug or a device fault, not a candidate's failure
                except Exception as err:  # noqa: BLE001 - the actor died past its retries
                    done = [(k, _failed(k, f"ray worker died: {type(err).__name__}: {err}")) for k, _ in refs[ref]]
                for key, r in done:
                    out[key] = r
                    on_result(key, r)
        return out

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)


def make_backend(name: str, cfg: EvalConfig, workers: int = 0, address: str | None = None,
                 gpus_per_worker: float = 0.0, log: Callable[[str], None] = print) -> Backend:
    """The backend ``name`` with ``workers`` workers (0: sized to the device, like ``cfg.group``
    0; Ray: 1 worker, group 8 unless given).  Local: every task is prepared here first, and one
    worker evaluates in this process."""
    if name == "ray":
        return RayBackend(cfg, workers or 1, address, gpus_per_worker, log=log)
    if name != "local":
        raise ConfigError(f"unknown backend {name!r}; choose local or ray")
    from exprsearch.kd.evaluate import Evaluator
    ev = Evaluator(cfg, log=log)
    plan = ev.size(workers)
    if plan.workers <= 1 and ev.device.type != "cuda":  # on a GPU even one worker is a process: it can be replaced
        return InlineBackend(cfg, log, evaluator=ev)
    device = ev.device
    del ev  # the workers hold their own; this process's memory goes back to the GPU
    if device.type == "cuda":
        from exprsearch.engine.sizing import free_memory
        free_memory(device)
    return PoolBackend(replace(cfg, group=plan.group, cuda_graphs=plan.graphs), plan.workers, log, warm=True)
