"""ExprBert's early exits: exit classifiers, skipping gates, exit rules, and batched inference
in which each example leaves at its own layer.

Rules (``exit_policy`` in the config): ``EntropyExit`` (DeeBERT / FastBERT: leave at the first
exit whose normalised entropy is below a threshold), ``PatienceExit`` (PABEE: leave once the
prediction has stayed the same for ``patience`` consecutive exits), ``GateExit`` (SmartBERT:
skipping gates skip layers, plus the entropy rule above a threshold).  ``early_exits`` drops the
rows that have left after every layer, so compute really falls.  Part of every model directory
exprsearch ships (copied verbatim: it imports only torch).

>>> import torch
>>> logits = torch.tensor([[4.0, -4.0], [0.1, 0.0]])
>>> EntropyExit(0.5).leave(0, logits, {}).tolist()
[True, False]
>>> state = {}
>>> [PatienceExit(1).leave(i, logits, state).tolist() for i in range(2)]
[[False, False], [True, True]]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence, Union

import torch
from torch import nn

if TYPE_CHECKING:
    from .configuration_exprbert import ExprBertConfig

__all__ = ["ExitHead", "SkipGate", "normalized_entropy", "EntropyExit", "PatienceExit", "GateExit", "ExitPolicy",
           "exit_policy", "early_exits"]


class ExitHead(nn.Module):
    """A classifier on the [CLS] vector after one layer, shaped like BERT's pooler + classifier:
    dense, tanh, dropout, linear."""

    def __init__(self, hidden: int, labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dense, self.drop, self.out = nn.Linear(hidden, hidden), nn.Dropout(dropout), nn.Linear(hidden, labels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(torch.tanh(self.dense(h[:, 0]))))


class SkipGate(nn.Module):
    """The probability of skipping the next layer, from its input's [CLS] vector."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.lin = nn.Linear(hidden, 1)
        nn.init.zeros_(self.lin.weight)
        nn.init.constant_(self.lin.bias, -2.0)  # p(skip) = 0.12: start by running every layer

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.lin(h[:, 0]).squeeze(-1).float())


def normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) divided by log(classes): 0 = certain, 1 = uniform."""
    p = torch.softmax(logits.float(), dim=-1)
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1) / math.log(logits.shape[-1])


@dataclass(frozen=True)
class EntropyExit:
    """Leave at the first exit whose normalised entropy is below ``threshold`` (0 never leaves
    early; above 1 always leaves at the first exit)."""

    threshold: float

    def leave(self, i: int, logits: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        if logits.shape[-1] < 2:
            raise ValueError("the entropy exit rule needs a classification task; use patience for regression")
        return normalized_entropy(logits) < self.threshold


@dataclass(frozen=True)
class PatienceExit:
    """Leave once the prediction has stayed the same for ``patience`` consecutive exits
    (regression: changed by less than ``tolerance``).  Patience 0 leaves at the first exit."""

    patience: int
    tolerance: float = 0.1

    def leave(self, i: int, logits: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        regression = logits.shape[-1] == 1
        pred = logits[:, 0].float() if regression else logits.argmax(-1).float()
        if "prev" in state:
            same = (pred - state["prev"]).abs() < self.tolerance if regression else pred == state["prev"]
            state["streak"] = torch.where(same, state["streak"] + 1, torch.zeros_like(state["streak"]))
        else:
            state["streak"] = torch.zeros_like(pred)
        state["prev"] = pred
        return state["streak"] >= self.patience


@dataclass(frozen=True)
class GateExit:
    """Skipping gates (skip layer i when its gate says p > 0.5), plus the entropy rule below
    ``threshold`` (0: gates only)."""

    threshold: float = 0.0
    gates: bool = True

    def leave(self, i: int, logits: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.threshold <= 0:
            return torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
        return EntropyExit(self.threshold).leave(i, logits, state)


ExitPolicy = Union[EntropyExit, PatienceExit, GateExit]  # an exit rule


def exit_policy(config: ExprBertConfig) -> ExitPolicy:
    """The exit rule an ExprBertConfig names (``exit_policy`` and its threshold or patience)."""
    if config.exit_policy == "entropy":
        return EntropyExit(config.exit_threshold)
    if config.exit_policy == "patience":
        return PatienceExit(config.exit_patience, config.exit_tolerance)
    if config.exit_policy == "gate":
        return GateExit(config.exit_threshold)
    raise ValueError(f"unknown exit_policy {config.exit_policy!r}: entropy, patience or gate")


@torch.no_grad()
def early_exits(hidden: torch.Tensor, mask: torch.Tensor | None, layers: nn.ModuleList | Sequence[nn.Module],
                head: Callable[[int, torch.Tensor], torch.Tensor | None], policy: ExitPolicy,
                gates: nn.ModuleList | Sequence[nn.Module] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, labels), layers run per example (B,)): run ``layers`` on the embeddings
    ``hidden``; after layer i, ``head(i, h)`` gives its exit's logits (None: no exit there; the
    last layer always has one) and the rows ``policy`` lets leave are dropped from the batch.
    With a gate policy, gate i - 1 decides whether a row runs layer i (a skipped row keeps its
    hidden state)."""
    b, n = hidden.shape[0], len(layers)
    use_gates = gates if getattr(policy, "gates", False) else None
    out: torch.Tensor | None = None
    used = torch.zeros(b, dtype=torch.long, device=hidden.device)
    active = torch.arange(b, device=hidden.device)
    state: dict[str, torch.Tensor] = {}
    h = hidden
    for i, layer in enumerate(layers):
        if use_gates is not None and i > 0:
            run = use_gates[i - 1](h) <= 0.5
            if bool(run.all()):
                h = layer(h, mask)[0]
            elif bool(run.any()):
                h = h.clone()
                h[run] = layer(h[run], None if mask is None else mask[run])[0]
            used[active] += run.long()
        else:
            h = layer(h, mask)[0]
            used[active] += 1
        logits = head(i, h)
        if logits is None:
            continue
        logits = logits.float()
        if out is None:
            out = logits.new_empty(b, logits.shape[-1])
        leave = torch.ones_like(active, dtype=torch.bool) if i == n - 1 else policy.leave(i, logits, state)
        if bool(leave.any()):
            out[active[leave]] = logits[leave]
            stay = ~leave
            active, h = active[stay], h[stay]
            mask = None if mask is None else mask[stay]
            state = {k: v[stay] for k, v in state.items()}
            if active.numel() == 0:
                break
    assert out is not None  # the last layer always has an exit
    return out, used
