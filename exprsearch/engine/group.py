"""K models + one batch stream --> K models trained in lock-step: the one training loop.

Input: K ``Member`` s (a model, its loss ``loss(model, batch, shared)`` and any extra trainable
parameters, or an explicit parameter list), an optional ``shared(batch)`` computed once per batch
under ``no_grad`` and handed to every loss (the teacher's logits and hidden states), a batch
source (``forever()``: a ``Batcher``, or anything the losses understand) and a ``TrainConfig``;
optionally ``lr_of(name)``, a parameter's own peak learning rate.  Every training in exprsearch
runs here: candidates (K of them), the teacher, supernet warm-ups, stage 3, exit heads and gates
(``train_one``: K = 1, raising ``CandidateFailed``).
Output: per member an ``Outcome`` -- its learning curve and, if its training broke, the
``CandidateFailed`` (NaN/Inf loss or gradient norm, exploding gradients) with the step.

Why: at this model size a training step is bound by kernel launches and Python, not by the GPU.
One step for K candidates shares the batch and the teacher forward, and on CUDA the whole step
of a length bucket (teacher forward, K forwards and backwards, per-candidate clipping, one fused
AdamW update) is captured once in a CUDA graph and replayed: a step is then one launch.

Memory: the warm-up step's cached memory is released before the first capture (it was allocated
on a side stream, of no use to the graph pool); a capture that fails is cleaned up -- graphs and
pool released, the CUDA generator repaired if the aborted capture left it mid-capture -- and
then, out of memory, raises ``GraphMemoryLost`` on CUDA (the aborted capture's pool stays
allocated: the process is replaced, its group halved) or the OOM itself on the CPU's test path
(the caller shrinks the group), or else falls back to eager steps (an op that cannot be captured).  ``faults.check`` marks the points where
tests inject failures.

Invariants: members never interact -- their losses are summed only to run one backward, each has
its own gradient clip and failure flag, and a failed member keeps running (its numbers are
discarded) so a captured graph never changes; the learning rate, the step id and the batch live
in device tensors that the graph reads, so replays need no host synchronisation (the host reads
the losses every ``log_every`` steps); a step that cannot be captured runs eagerly (``mode``).

>>> import torch
>>> from exprsearch.rows.tokens import Encoded, Batcher
>>> enc = Encoded(torch.randint(1, 50, (64, 6)), torch.zeros(64, 6, dtype=torch.long),
...               torch.full((64,), 6), torch.randint(0, 2, (64,)).float())
>>> def mean_loss(m, batch, shared):
...     return m(batch.input_ids.float()).pow(2).mean()
>>> members = [Member(torch.nn.Linear(6, 1), mean_loss) for _ in range(3)]
>>> outs = GroupTrainer(members, TrainConfig(lr=0.1, steps=20, log_every=10)).train(Batcher(enc, 16))
>>> [len(o.curve.loss) for o in outs], all(o.failed is None for o in outs)
([2, 2, 2], True)
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import torch
from torch import nn

from exprsearch.errors import DeviceError, GraphMemoryLost
from exprsearch.rows.tokens import Batch, Batches

from . import faults
from .train import (
    CandidateFailed,
    Curve,
    TrainConfig,
    bad_reason,
    lr_factor,
    param_groups,
)

if TYPE_CHECKING:
    from .checkpoint import Checkpoint

__all__ = ["Member", "Outcome", "GroupTrainer", "train_one", "is_oom", "repair_cuda_rng"]


B = TypeVar("B")  # what a Batches source yields (train_one)

LossFn = Callable[[nn.Module | None, Batch, Any], torch.Tensor]


@dataclass
class Member:
    """One model trained in the group."""

    model: nn.Module | None
    loss: LossFn                                                     # (model, batch, shared) -> loss
    extra: list[tuple[str, nn.Parameter]] = field(default_factory=list)  # e.g. a KD projection
    params: list[tuple[str, nn.Parameter]] | None = None             # trained instead of model's + extra

    def named(self) -> list[tuple[str, nn.Parameter]]:
        """The (name, parameter) pairs this member trains."""
        if self.params is not None:
            pairs = self.params
        elif self.model is not None:
            pairs = list(self.model.named_parameters()) + list(self.extra)
        else:
            raise ValueError("a member without a model names the parameters it trains (params)")
        return [(n, p) for n, p in pairs if p.requires_grad]


@dataclass
class Outcome:
    curve: Curve = field(default_factory=Curve)
    failed: CandidateFailed | None = None
    stopped: str | None = None          # set when ``on_log`` stops the member (a hurdle)

    @property
    def running(self) -> bool:
        return self.failed is None and self.stopped is None


OnLog = Callable[[int, dict[int, float]], dict[int, str]]  # (step, {member: mean loss}) -> {member: why stop}


class GroupTrainer:
    """Train members in lock-step for ``cfg.steps`` steps (``train``); see the module docstring."""

    def __init__(self, members: list[Member], cfg: TrainConfig, device: torch.device | str = "cpu",
                 shared: Callable[[Batch], Any] | None = None, graphs: bool = True, streams: bool = False,
                 log: Callable[[str], None] | None = None, lr_of: Callable[[str], float] | None = None) -> None:
        self.members, self.cfg, self.shared = members, cfg, shared
        self.device = torch.device(device)
        self.log = log or (lambda m: None)
        cuda = self.device.type == "cuda"
        self.want_graphs = graphs                                 # capture points are passed on the CPU too
        self.use_graphs, self.streams = graphs and cuda, streams and cuda
        named = [m.named() for m in members]
        self.params = [[p for _, p in ps] for ps in named]
        groups = param_groups(iter([np for ps in named for np in ps]), cfg.weight_decay, lr_of)
        self.base_lr = [g.pop("lr", cfg.lr) for g in groups]  # each group's peak rate
        for g, lr in zip(groups, self.base_lr):  # on CUDA a device tensor: the captured update reads it
            g["lr"] = torch.tensor(lr, device=self.device) if cuda else lr
        self.opt = (torch.optim.AdamW(groups, lr=cfg.lr, fused=True, capturable=True) if cuda
                    else torch.optim.AdamW(groups, lr=cfg.lr))
        k = len(members)
        self.acc = torch.zeros(k, device=self.device)            # summed loss since the last log point
        self.first_bad = torch.zeros(k, 3, device=self.device)   # (step, loss, norm) of the first bad step
        self.step_id = torch.zeros((), device=self.device)
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, Batch] | None] = {}
        self._captured = False
        self._pool: Any = None
        self._warm = False
        self._side = [torch.cuda.Stream(self.device) for _ in members] if self.streams else []
        self.mode = "graphs" if self.use_graphs else "eager"
        self.counts = {"eager": 0, "captured": 0, "replayed": 0}

    # -- one step --------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.cfg.bf16 and self.device.type == "cuda", cache_enabled=False)

    def _body(self, batch: Batch) -> None:
        """The whole step on ``batch``: what runs eagerly or is captured."""
        cfg, k = self.cfg, len(self.members)
        with self._autocast():
            shared = self.shared(batch) if self.shared is not None else None
        losses: list[torch.Tensor] = []
        norms: list[torch.Tensor] = []
        main = torch.cuda.current_stream(self.device) if self._side else None
        for i, m in enumerate(self.members):
            side = self._side[i] if self._side else None
            if side is not None and main is not None:
                side.wait_stream(main)
            with torch.cuda.stream(side) if side is not None else nullcontext():
                with self._autocast():
                    loss = m.loss(m.model, batch, shared).float()
                if side is not None:  # each member's backward and clip on its own stream
                    loss.backward()
                    norms.append(torch.nn.utils.clip_grad_norm_(self.params[i], cfg.clip))
            losses.append(loss)
        if main is not None:
            for s in self._side:
                main.wait_stream(s)
        else:
            torch.stack(losses).sum().backward()  # independent members: each loss reaches only its own weights
            norms = [torch.nn.utils.clip_grad_norm_(ps, cfg.clip) for ps in self.params]
        loss_v = torch.stack([x.detach() for x in losses])
        norm_v = torch.stack([n.float() for n in norms])
        bad = ~torch.isfinite(norm_v) | (norm_v > cfg.explode) | ~torch.isfinite(loss_v)
        here = torch.stack([self.step_id.expand(k), loss_v, norm_v], 1)
        self.first_bad.copy_(torch.where((bad & (self.first_bad[:, 0] == 0))[:, None], here, self.first_bad))
        self.acc.add_(loss_v)
        self.opt.step()

    def _eager(self, batch: Batch) -> None:
        if self.device.type == "cuda" and not self._warm:  # first step: warm up on a side stream
            s = torch.cuda.Stream(self.device)
            s.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(s):
                self._body(batch)
            torch.cuda.current_stream(self.device).wait_stream(s)
        else:
            self._body(batch)
        self.opt.zero_grad(set_to_none=True)
        self._warm = True
        self.counts["eager"] += 1

    def _step(self, batch: Batch) -> None:
        faults.check("step", self.device)
        if not self.want_graphs or not self._warm:
            return self._eager(batch)
        key = tuple(batch.input_ids.shape)
        if key not in self._graphs:
            self._graphs[key] = self._capture(batch)
        entry = self._graphs[key]
        if entry is None or not self.use_graphs:  # this bucket (or, after a failed capture, every one) runs eagerly
            return self._eager(batch)
        graph, static = entry
        for dst, src in zip(_fields(static), _fields(batch)):
            dst.copy_(src)
        graph.replay()
        self.counts["replayed"] += 1

    def _capture(self, batch: Batch) -> tuple[torch.cuda.CUDAGraph, Batch] | None:
        """The step of ``batch``'s shape as a graph (None: run it eagerly).  Out of memory is
        re-raised once the failed capture is cleaned up; another failure turns graphs off."""
        try:
            if not self.use_graphs:  # the CPU: no graph, but the point a test's fault is injected at
                faults.check("capture", self.device)
                return None
            return self._record(batch)
        except Exception as err:  # noqa: BLE001 - cleaned up below, then re-raised or eager
            self.release()
            repair_cuda_rng(self.device)
            if isinstance(err, GraphMemoryLost):
                raise
            if is_oom(err):
                what = (f"CUDA out of memory while capturing a CUDA graph of {len(self.members)} candidates at "
                        f"width {batch.input_ids.shape[1]}")
                if self.use_graphs:  # measured on an H100: the aborted capture's pool stays allocated
                    raise GraphMemoryLost(f"{what}: its memory pool is held until the process ends") from err
                raise torch.cuda.OutOfMemoryError(what) from err
            self.log(f"CUDA graph capture failed ({type(err).__name__}: {err}); training eagerly")
            self.use_graphs, self.mode = False, "eager (capture failed)"
            return None

    def _record(self, batch: Batch) -> tuple[torch.cuda.CUDAGraph, Batch]:
        if not self._captured:  # the warm-up step's blocks are cached for its side stream: no use to the pool
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            self._captured = True
        static = Batch(*(t.clone() for t in _fields(batch)))
        self.opt.zero_grad(set_to_none=True)  # gradients are allocated (and written, not summed) in the graph
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()  # one pool: the graphs never run at once
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(self.device)
        with torch.cuda.graph(graph, pool=self._pool):
            faults.check("capture", self.device)
            self._body(static)
        self.counts["captured"] += 1
        return graph, static

    # -- the loop ---------------------------------------------------------------------------------
    def train(self, batches: Batches[Any], on_log: OnLog | None = None, start: int = 0) -> list[Outcome]:
        """Run ``cfg.steps`` steps; every ``log_every`` steps record each running member's mean loss,
        mark newly failed members, and let ``on_log`` stop members.  Stops early once none runs.
        ``start``: the steps already done (a training continued from a checkpoint: their batches
        are skipped and the schedule goes on from the next step)."""
        cfg = self.cfg
        factor = lr_factor(cfg)
        outs = [Outcome() for _ in self.members]
        stream = batches.forever()
        for _ in range(start):
            next(stream)
        last = start  # step of the last curve point
        try:
            for step in range(start + 1, cfg.steps + 1):
                f = factor(step - 1)
                for g, lr in zip(self.opt.param_groups, self.base_lr):
                    if isinstance(g["lr"], torch.Tensor):
                        g["lr"].fill_(lr * f)
                    else:
                        g["lr"] = lr * f
                self.step_id.fill_(step)
                self._step(next(stream))
                point = step % cfg.log_every == 0 or step == cfg.steps
                if point or self.device.type != "cuda":  # on the CPU a check costs nothing: fail fast
                    self._check(step, outs, step - last if point else 0, on_log)
                    last = step if point else last
                    if not any(o.running for o in outs):
                        break
        finally:  # graphs, their memory pool and the gradients go even when a step raises
            self.release()
        return outs

    def _check(self, step: int, outs: list[Outcome], n: int, on_log: OnLog | None) -> None:
        """Failures always; with ``n`` > 0 also a curve point (mean of the last n steps) and hurdles."""
        bad = self.first_bad.tolist()
        for i, o in enumerate(outs):
            if o.failed is None and bad[i][0] > 0:
                s, lo, no = bad[i]
                o.failed = bad_reason(lo, no, self.cfg, int(s))
        if not n:
            return
        acc = self.acc.tolist()
        self.acc.zero_()
        means: dict[int, float] = {}
        for i, o in enumerate(outs):
            if o.running:
                o.curve.loss.append((step, acc[i] / n))
                means[i] = acc[i] / n
        if on_log is not None and means:
            for i, why in on_log(step, means).items():
                outs[i].stopped = why

    def release(self) -> None:
        """Free the captured graphs and their memory pool."""
        self._graphs.clear()
        self._pool = None
        self.opt.zero_grad(set_to_none=True)


def train_one(loss: Callable[[B], torch.Tensor], params: list[tuple[str, nn.Parameter]], batches: Batches[B],
              cfg: TrainConfig, device: torch.device | str = "cpu", *,
              on_log: Callable[[int, float], Any] | None = None, lr_of: Callable[[str], float] | None = None,
              log: Callable[[str], None] | None = None, checkpoint: Checkpoint | None = None) -> Curve:
    """Train ``params`` on ``loss(batch)`` for ``cfg.steps`` steps: the group loop with one member,
    eager (the loss may change the model between steps: supernet sampling).  ``on_log(step, mean
    loss)`` every ``log_every`` steps may raise to stop.  Raises ``CandidateFailed`` on a NaN/Inf
    loss or gradient norm, or exploding gradients.  ``checkpoint`` (``checkpoint.Checkpoint``):
    continue from its file if there is one, write it at log points (the caller removes it once
    the result is safe: ``checkpoint.done()``).

    >>> import torch
    >>> from exprsearch.rows.tokens import Encoded, Batcher
    >>> enc = Encoded(torch.randint(1, 50, (32, 6)), torch.zeros(32, 6, dtype=torch.long),
    ...               torch.full((32,), 6), torch.randint(0, 2, (32,)).float())
    >>> lin = torch.nn.Linear(6, 1)
    >>> curve = train_one(lambda b: lin(b.input_ids.float()).pow(2).mean(), list(lin.named_parameters()),
    ...                   Batcher(enc, 8), TrainConfig(lr=0.01, steps=8, log_every=4))
    >>> [s for s, _ in curve.loss]
    [4, 8]
    """
    def member_loss(_model: nn.Module | None, batch: Any, _shared: Any) -> torch.Tensor:
        return loss(batch)  # whatever ``batches`` yields

    member = Member(None, member_loss, params=params)
    trainer = GroupTrainer([member], cfg, device, graphs=False, log=log, lr_of=lr_of)
    start = checkpoint.restore(trainer) if checkpoint is not None else 0

    def hook(step: int, means: dict[int, float]) -> dict[int, str]:
        out = (on_log(step, means[0]) or {}) if on_log is not None else {}
        if checkpoint is not None:
            checkpoint.save(trainer, step)
        return out

    out = trainer.train(batches, on_log=hook if on_log is not None or checkpoint is not None else None,
                        start=start)[0]
    if out.failed is not None:
        raise out.failed
    return out.curve


def is_oom(err: BaseException | None) -> bool:
    """Whether ``err`` or an exception it was raised from is an out-of-memory error (a failed
    capture's own error often hides the allocator's under "operation failed during capture").

    >>> try:
    ...     try:
    ...         raise torch.cuda.OutOfMemoryError("CUDA out of memory")
    ...     except RuntimeError:
    ...         raise RuntimeError("operation not permitted when stream is capturing")
    ... except RuntimeError as e:
    ...     print(is_oom(e), is_oom(ValueError("x")))
    True False
    """
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower():
            return True
        err = err.__cause__ or err.__context__
    return False


def repair_cuda_rng(device: torch.device) -> None:
    """After an aborted capture: a CUDA generator whose capture never ended refuses every later
    random draw ("Offset increment outside graph capture encountered unexpectedly").  Probe it;
    if it refuses, give it a fresh state (same seed); if it still refuses, the process cannot
    train any more (``DeviceError``: replace the worker).  No-op on the CPU."""
    if device.type != "cuda":
        return
    torch.cuda.synchronize(device)
    try:
        torch.rand(1, device=device)
        return
    except RuntimeError:
        pass
    gen = torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    fresh = torch.Generator(device=device)
    fresh.manual_seed(gen.initial_seed())
    try:
        gen.graphsafe_set_state(fresh)
        torch.rand(1, device=device)
        torch.cuda.synchronize(device)
    except RuntimeError as err:
        raise DeviceError(f"the CUDA generator is unusable after an aborted graph capture ({err}); "
                          f"the process must be replaced") from err


def _fields(b: Batch) -> tuple[torch.Tensor, ...]:
    return (b.input_ids, b.token_type_ids, b.attention_mask, b.labels, b.index)
