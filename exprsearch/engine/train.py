"""training settings and pieces --> the loop (group.py), dev predictions and metrics.

Input: options, a model and an encoded split.  Output: ``TrainConfig`` (one training's settings;
``from_eval`` derives it from an evaluation protocol), the learning-rate schedule, AdamW parameter
groups, the failure reasons of a bad step (``CandidateFailed``), a learning ``Curve``, dev
predictions and metrics, progress lines.  The loop itself is ``group.GroupTrainer`` (K models;
``group.train_one`` for one): a budget of *steps*, so cost is predictable.

>>> TrainConfig().lr, TrainConfig().batch_size
(5e-05, 32)
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

import torch
from torch import nn

from exprsearch.errors import ExprSearchError, check_number, check_whole
from exprsearch.rows.glue import Task, compute_metrics, metric_std
from exprsearch.rows.tokens import Batcher, Encoded

__all__ = ["TrainConfig", "EvalSettings", "CandidateFailed", "predict", "dev_metrics",
           "Curve", "lr_factor", "param_groups", "bad_reason", "Progress"]


class EvalSettings(Protocol):
    """What ``TrainConfig.from_eval`` reads of an evaluation protocol (``kd.protocol.EvalConfig``,
    a later layer than this one)."""

    @property
    def lr(self) -> float: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def max_len(self) -> int: ...


class CandidateFailed(ExprSearchError):
    """One candidate's training broke (NaN/Inf loss, exploding gradients, out of memory)."""

    def __init__(self, reason: str, step: int | None = None) -> None:
        super().__init__(reason if step is None else f"{reason} at step {step}")
        self.reason, self.step = reason, step


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run."""

    lr: float = 5e-5              # peak learning rate (AdamW)
    batch_size: int = 32          # examples per step
    steps: int = 600              # optimisation steps (the budget)
    warmup: float = 0.1           # fraction of steps with linear warm-up
    weight_decay: float = 0.01    # AdamW weight decay (not on biases / LayerNorm)
    clip: float = 1.0             # gradient-norm clip
    explode: float = 1e4          # a gradient norm above this fails the candidate
    bf16: bool = True             # bf16 autocast on CUDA
    max_len: int = 128            # longest tokenised input
    seed: int = 0                 # data order and initialisation seed
    log_every: int = 50           # steps between learning-curve points

    def __post_init__(self) -> None:
        check_whole(self, "batch_size", "steps", "log_every", least=1)
        check_whole(self, "max_len", least=2)
        check_whole(self, "seed", least=0, most=2**32 - 1)
        check_number(self, "lr", "clip", "explode", above=0)
        check_number(self, "warmup", least=0, most=1)
        check_number(self, "weight_decay", least=0)

    @classmethod
    def from_eval(cls, cfg: EvalSettings, *, steps: int, lr: float | None = None, seed: int | None = None,
                  log_every: int | None = None, batch_size: int | None = None) -> "TrainConfig":
        """The optimisation settings an evaluation protocol (``EvalConfig``) implies for one
        training of ``steps`` steps: its learning rate, batch size, seed and length unless given;
        ten curve points unless ``log_every`` says otherwise.

        >>> from types import SimpleNamespace
        >>> ev = SimpleNamespace(lr=2e-4, batch_size=128, seed=0, max_len=128)
        >>> TrainConfig.from_eval(ev, steps=300).log_every, TrainConfig.from_eval(ev, steps=5, lr=1e-3).lr
        (30, 0.001)
        """
        return cls(lr=cfg.lr if lr is None else lr, batch_size=cfg.batch_size if batch_size is None else batch_size,
                   steps=steps, seed=cfg.seed if seed is None else seed, max_len=cfg.max_len,
                   log_every=max(1, steps // 10 if log_every is None else log_every))


def lr_factor(cfg: TrainConfig) -> Callable[[int], float]:
    """The learning-rate schedule (a factor of ``cfg.lr`` for 0-based step s): linear warm-up over
    ``cfg.warmup`` of the steps, then linear decay to 0.

    >>> f = lr_factor(TrainConfig(steps=10, warmup=0.2))
    >>> [round(f(s), 3) for s in (0, 1, 2, 9)]
    [0.5, 1.0, 1.0, 0.125]
    """
    warm = max(1, int(cfg.warmup * cfg.steps))
    return lambda s: min((s + 1) / warm, max(0.0, (cfg.steps - s) / max(1, cfg.steps - warm)))


def param_groups(params: Iterator[tuple[str, nn.Parameter]], weight_decay: float,
                 lr_of: Callable[[str], float] | None = None) -> list[dict]:
    """AdamW groups: weight decay on matrices, none on biases and LayerNorms; ``lr_of(name)``, if
    given, sets each parameter's peak learning rate (one group per rate).

    >>> ps = [("enc.w", nn.Parameter(torch.ones(2, 2))), ("enc.b", nn.Parameter(torch.ones(2))),
    ...       ("head.w", nn.Parameter(torch.ones(2, 2)))]
    >>> [(len(g["params"]), g["weight_decay"]) for g in param_groups(iter(ps), 0.01)]
    [(2, 0.01), (1, 0.0)]
    >>> [(len(g["params"]), g["lr"]) for g in param_groups(iter(ps), 0.01, lambda n: 1e-3 if n[0] == "h" else 5e-5)]
    [(1, 5e-05), (1, 0.001), (1, 5e-05)]
    """
    groups: dict[tuple[bool, float | None], list[nn.Parameter]] = {}
    for name, p in params:
        if p.requires_grad:
            decay = not (p.ndim < 2 or "ln" in name.lower() or "layernorm" in name.lower())
            groups.setdefault((decay, lr_of(name) if lr_of else None), []).append(p)
    if lr_of is None:  # both groups, even when one is empty
        return [{"params": groups.get((d, None), []), "weight_decay": weight_decay if d else 0.0}
                for d in (True, False)]
    return [{"params": ps, "weight_decay": weight_decay if d else 0.0, "lr": lr}
            for (d, lr), ps in sorted(groups.items(), key=lambda kv: not kv[0][0])]


@dataclass
class Curve:
    """Learning curve: (step, mean training loss since the last point) and dev evaluations."""

    loss: list[tuple[int, float]] = field(default_factory=list)
    dev: list[tuple[int, float]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"loss": self.loss, "dev": self.dev}


def _autocast(device: torch.device, on: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=on and device.type == "cuda")


def bad_reason(loss: float, norm: float, cfg: TrainConfig, step: int) -> CandidateFailed:
    """Why a step failed: the loss or gradient norm is not finite, or the gradients exploded."""
    if not math.isfinite(loss):
        return CandidateFailed(f"loss is {loss}", step)
    if not math.isfinite(norm):
        return CandidateFailed(f"gradient norm is {norm}", step)
    return CandidateFailed(f"exploding gradients (norm {norm:.3g} > {cfg.explode:g})", step)



@torch.no_grad()
def predict(model: nn.Module, enc: Encoded, t: Task, device: torch.device, batch_size: int = 128,
            bf16: bool = True) -> torch.Tensor:
    """Predictions (class ids, or regression values) for every row of ``enc``, in row order."""
    was = model.training
    model.eval()
    out = torch.empty(len(enc), device=device)
    b = Batcher(enc, batch_size, device=device, shuffle=False)
    for batch in b.epoch(0):
        with _autocast(device, bf16):
            logits = model(**batch.inputs_for(model)).logits.float()
        out[batch.index] = logits[:, 0] if t.regression else logits.argmax(-1).float()
    model.train(was)
    return out


def dev_metrics(model: nn.Module, enc: Encoded, t: Task, device: torch.device, bf16: bool = True,
                std: bool = False) -> dict[str, float]:
    """The task's metrics on ``enc``; with ``std`` also ``<main>_std``, the bootstrap standard
    deviation of the main metric over the dev rows."""
    preds = predict(model, enc, t, device, bf16=bf16).tolist()
    labels = enc.labels.tolist()
    out = compute_metrics(t, labels, preds)
    if std:
        out[f"{t.main}_std"] = metric_std(t, labels, preds)
    return out


class Stopwatch:
    def __init__(self) -> None:
        self.t = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t


class Progress:
    """An ``on_log`` callback for long training loops: one line at most every ``every_s`` seconds
    (a GPU warm-up of a few seconds prints none; a CPU one minutes long shows it is alive).
    Takes a loss or ``GroupTrainer``'s {member: loss} and stops nothing.

    >>> lines = []
    >>> p = Progress(lines.append, "warm-up MRPC", 600, every_s=0)
    >>> p(60, 1.2345), p(120, {0: 1.0, 1: 3.0}), lines[1].split(",")[:2]
    ({}, {}, ['  warm-up MRPC: step 120/600', ' loss 2.000'])
    """

    def __init__(self, log: Callable[[str], None], what: str, total: int, every_s: float = 30.0) -> None:
        self.log, self.what, self.total, self.every_s = log, what, total, every_s
        self.clock, self.last = Stopwatch(), 0.0

    def __call__(self, step: int, loss: float | dict[int, float]) -> dict[int, str]:
        now = self.clock()
        if now - self.last >= self.every_s and step < self.total:
            self.last = now
            mean = sum(loss.values()) / len(loss) if isinstance(loss, dict) else loss
            left = now * (self.total - step) / max(1, step)
            self.log(f"  {self.what}: step {step}/{self.total}, loss {mean:.3f}, {now:.0f}s, ~{left:.0f}s left")
        return {}

