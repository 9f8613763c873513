"""the GPU's free memory + a measured footprint --> group size, worker count and CUDA graphs.

Input: an ``Evaluator`` with its tasks prepared (``measure``: on CUDA, train a group of 1 and of
``probe`` standard-FFN students for a few steps on synthetic batches of every length bucket, in the
same order as real training: an eager warm-up step at the longest width, then a capture and a
replay of each bucket) and the free memory of the card.  Output: a ``Footprint`` (bytes a worker
process holds, a step's fixed part, its part per candidate) and a ``Plan`` -- how many worker
processes, how many candidates each trains in lock-step, graphs or eager -- that fits the card
(``plan``, pure arithmetic).  Explicit values win: a plan that does not fit says so in ``notes``.
Invariant: the sizes change only speed and memory, never results (``dropout`` 0: a candidate's
result does not depend on its group; EvalConfig's execution fields).

>>> gib = 1 << 30
>>> fp = Footprint(process=int(1.5 * gib), base=1 * gib, per_member=int(2.2 * gib), graphs=True)
>>> plan(78 * gib, fp).describe()
'2 workers x group 10 with CUDA graphs (needs 71.0 of 78.0 GiB free)'
>>> plan(22 * gib, fp).describe()
'1 worker x group 5 with CUDA graphs (needs 19.0 of 22.0 GiB free)'
>>> p = plan(22 * gib, fp, group=16, workers=2)
>>> p.group, p.workers, p.notes[0][:48]
(16, 2, '--group 16 --workers 2 need about 110.6 GiB, the')
"""
from __future__ import annotations

import gc
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Protocol

import torch

from .train import EvalSettings

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from exprsearch.lang.expr import ModelSpec
    from exprsearch.rows.glue import Task
    from exprsearch.rows.tokens import Batch, Batcher

    from .group import GroupTrainer, Member
    from .train import TrainConfig

__all__ = ["Footprint", "Plan", "plan", "measure", "size_to_gpu", "free_memory", "GIB", "Sizable"]

GIB = float(1 << 30)
MARGIN = 1.5        # a candidate may be heavier than the probe's standard FFN (more element-wise ops): on an
                    # H100 a group of 15 took 1.25-1.32x the probe's measure per candidate
RESERVE = 0.06      # of the free memory, never planned: fragmentation, the allocator's rounding


@dataclass(frozen=True)
class Footprint:
    """Measured bytes on one GPU."""

    process: int        # an evaluator process at rest: CUDA context, teachers, supernets, data
    base: int           # a training step's part that does not grow with the group (teacher forward, ...)
    per_member: int     # each candidate of a group: weights, gradients, AdamW state, activations, graph pool
    graphs: bool        # measured with CUDA graphs (eager otherwise)

    def need(self, group: int, workers: int) -> int:
        """Bytes ``workers`` processes training groups of ``group`` take, with the safety margin."""
        return int(workers * (self.process + self.base + group * self.per_member * MARGIN))


@dataclass(frozen=True)
class Plan:
    group: int                      # candidates a worker trains in lock-step
    workers: int                    # worker processes sharing the GPU
    graphs: bool                    # capture each length bucket's step as a CUDA graph
    free: int = 0                   # bytes free on the GPU when planned
    need: int = 0                   # bytes the plan is expected to take
    notes: tuple[str, ...] = field(default_factory=tuple)  # warnings (an explicit choice that will not fit)

    def describe(self) -> str:
        w = f"{self.workers} worker{'s' * (self.workers != 1)}"
        how = "with CUDA graphs" if self.graphs else "eager (no CUDA graphs)"
        return f"{w} x group {self.group} {how} (needs {self.need / GIB:.1f} of {self.free / GIB:.1f} GiB free)"


def _largest_group(free: float, fp: Footprint, workers: int, cap: int) -> int:
    per = (free / workers - fp.process - fp.base) / (fp.per_member * MARGIN)
    return max(0, min(cap, int(per)))


def plan(free: int, fp: Footprint, *, group: int = 0, workers: int = 0, max_group: int = 16,
         max_workers: int = 2) -> Plan:
    """The sizes for ``free`` bytes: two workers when each can still train at least half of
    ``max_group`` at once (they overlap one's host work with the other's GPU work), else one with
    the largest group that fits; ``group``/``workers`` > 0 are kept as given (with a note when they
    will not fit).  A plan with group 0 means even one candidate does not fit."""
    usable = free * (1 - RESERVE)
    notes: list[str] = []
    if group and workers:
        g, w = group, workers
    elif workers:
        g, w = max(1, _largest_group(usable, fp, workers, max_group)), workers
    elif group:
        w = next((n for n in range(max_workers, 0, -1) if fp.need(group, n) <= usable), 1)
        g = group
    else:
        w = max_workers if _largest_group(usable, fp, max_workers, max_group) >= max(1, max_group // 2) else 1
        g = _largest_group(usable, fp, w, max_group)
        if g == 0:
            g = 1
            notes.append(f"one candidate needs about {fp.need(1, 1) / GIB:.1f} GiB, the GPU has "
                         f"{free / GIB:.1f} GiB free: expect out-of-memory failures")
    need = fp.need(g, w)
    if (group or workers) and need > usable:
        best = _largest_group(usable, fp, w, max_group)
        fix = f"--group {best}" if best else "--workers 1 --group 1"
        notes.append(f"--group {g} --workers {w} need about {need / GIB:.1f} GiB, the GPU has {free / GIB:.1f} GiB "
                     f"free: out-of-memory groups will be halved and retried (faster: {fix}, or leave both unset)")
    return Plan(g, w, fp.graphs, int(free), need, tuple(notes))


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device`` for new processes (this process's cached blocks released first)."""
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    return int(torch.cuda.mem_get_info(device)[0])


class _Prepared(Protocol):
    """What sizing reads of a task an evaluator prepared (``kd.prepare.TaskState``)."""

    @property
    def task(self) -> Task: ...
    @property
    def train(self) -> Batcher: ...
    @property
    def teacher(self) -> PreTrainedModel: ...


class _Settings(EvalSettings, Protocol):
    @property
    def layers(self) -> int: ...
    @property
    def group(self) -> int: ...


class Sizable(Protocol):
    """What sizing reads of an evaluator (``kd.evaluate.Evaluator``, a later layer than this one):
    its device, protocol and prepared tasks, and how it makes and trains a group."""

    @property
    def device(self) -> torch.device: ...
    @property
    def cfg(self) -> _Settings: ...
    @property
    def graphs(self) -> bool: ...
    @property
    def state(self) -> Mapping[str, _Prepared]: ...
    def log(self, message: str) -> None: ...
    def members(self, st: Any, specs: list[ModelSpec]) -> list[Member]: ...
    def trainer(self, members: list[Member], tc: TrainConfig, graphs: bool | None = None) -> GroupTrainer: ...


class _Fixed:
    """A batch source for ``GroupTrainer.train``: the given batches, over and over."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def forever(self) -> Iterator[Batch]:
        return itertools.cycle(self.batches)


def _batches(ev: Sizable, st: _Prepared) -> list[Batch]:
    """Synthetic batches of the task's shapes: the longest width first (the eager warm-up step),
    then each width twice (capture, replay)."""
    from exprsearch.rows.tokens import Batch
    n, dev = ev.cfg.batch_size, ev.device
    widths = list(st.train.widths) or [ev.cfg.max_len]
    vocab = st.teacher.config.vocab_size

    def make(w: int) -> Batch:
        ids = torch.randint(min(1000, vocab - 1), vocab, (n, w), device=dev)
        labels = torch.randint(0, max(1, st.task.num_labels), (n,), device=dev).float()
        return Batch(ids, torch.zeros_like(ids), torch.ones_like(ids), labels, torch.arange(n, device=dev))

    return [make(max(widths))] + [make(w) for w in widths for _ in range(2)]


def _peak(ev: Sizable, st: _Prepared, k: int, graphs: bool) -> int:
    """Peak bytes reserved while training ``k`` standard-FFN students on ``st`` (beyond what the
    process held before)."""
    from exprsearch.lang.standard import STANDARD_SPEC

    from .train import TrainConfig
    dev = ev.device
    free_memory(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    before = torch.cuda.memory_reserved(dev)
    spec = STANDARD_SPEC.broadcast(ev.cfg.layers)
    batches = _batches(ev, st)
    members = ev.members(st, [spec] * k)
    tc = TrainConfig.from_eval(ev.cfg, steps=len(batches), log_every=len(batches))
    trainer = ev.trainer(members, tc, graphs)
    trainer.train(_Fixed(batches))
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_reserved(dev) - before
    del trainer, members
    free_memory(dev)
    return int(peak)


def measure(ev: Sizable, graphs: bool = True, probe: int = 4) -> Footprint:
    """The footprint of ``ev``'s protocol on its GPU: a group of 1 and of ``probe`` standard-FFN
    students on the task with the longest buckets (every task shares the batch size and widths),
    with CUDA graphs or eager.  A probe group that does not fit is halved."""
    dev = ev.device
    st = max(ev.state.values(), key=lambda s: (max(s.train.widths or (0,)), s.task.num_labels))
    process = torch.cuda.memory_reserved(dev) + _context_bytes(dev)
    one = _peak(ev, st, 1, graphs)
    while probe > 1:
        try:
            many = _peak(ev, st, probe, graphs)
            break
        except torch.cuda.OutOfMemoryError:
            free_memory(dev)
            probe //= 2
    if probe <= 1:
        return Footprint(process, 0, one, graphs)
    per = max(1, (many - one) // (probe - 1))
    return Footprint(int(process), max(0, one - per), int(per), graphs)


def size_to_gpu(ev: Sizable, workers: int = 0) -> Plan:
    """The plan for evaluator ``ev`` on its GPU: measured with CUDA graphs (or eager when the
    protocol has them off, or when not even one candidate fits with them), logged with its
    measurements and any warning."""
    dev = ev.device

    def planned(graphs: bool) -> tuple[Plan, Footprint]:
        fp = measure(ev, graphs=graphs)
        return plan(free_memory(dev) + torch.cuda.memory_reserved(dev), fp, group=ev.cfg.group, workers=workers), fp

    p, fp = planned(ev.graphs)
    if ev.graphs and p.group <= 1 and fp.need(1, p.workers) > p.free:  # graphs do not fit: try eager
        p, fp = planned(False)
    ev.log(f"sized to the GPU ({torch.cuda.get_device_name(dev)}): {p.describe()}; measured a worker at "
           f"{fp.process / GIB:.1f} GiB, a step at {fp.base / GIB:.1f} GiB + {fp.per_member / GIB:.2f} GiB per candidate")
    for note in p.notes:
        ev.log(f"warning: {note}")
    return p


def _context_bytes(dev: torch.device) -> int:
    """Device memory this process holds outside PyTorch's allocator (CUDA context, cuBLAS
    workspaces), as far as it can be told apart: used memory minus what the allocator reserved
    (other processes on the card count too, so the figure errs on the safe side), at most 2 GiB."""
    free, total = torch.cuda.mem_get_info(dev)
    return int(min(2 * GIB, max(0, total - free - torch.cuda.memory_reserved(dev))))
