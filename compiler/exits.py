"""a BERT student --> the same student with exit heads and skipping gates (dynamic inference).

``EarlyExitBert`` wraps any student (searched or not, LSRA and pruned layers included) without
changing it: one exit classifier per layer (the last one *is* the student's own pooler and
classifier, so running every layer reproduces the static model exactly), and a skipping gate
before every layer but the first (SmartBERT).  ``all_logits`` is the training view (every
layer's logits; gates soft, or hard with a straight-through gradient); ``infer`` is batched
inference where each example leaves at its own layer: the rows still running are gathered
after every layer, so compute really drops.  Policies (``EntropyExit``, ``PatienceExit``,
``GateExit``) decide per layer which rows leave.  Invariant: batched and one-example-at-a-time
inference give the same predictions and layer counts (tested).

>>> import torch
>>> from exprsearch.compiler import StudentConfig, build_student
>>> m = EarlyExitBert(build_student("linear1_1(gelu(linear1_1(x,wb1)),wb2)",
...                   StudentConfig(layers=3, hidden=16, heads=2, vocab_size=50))).eval()
>>> ids = torch.randint(1, 50, (4, 6))
>>> logits, used = m.infer({"input_ids": ids}, PatienceExit(patience=1))
>>> logits.shape, bool((used >= 2).all())
(torch.Size([4, 2]), True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from exprsearch.errors import ConfigError

__all__ = ["EarlyExitBert", "ExitHead", "SkipGate", "EntropyExit", "PatienceExit", "GateExit", "normalized_entropy"]


class ExitHead(nn.Module):
    """Pooler-shaped classifier on the [CLS] vector: dense, tanh, dropout, linear."""

    def __init__(self, hidden: int, labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dense, self.drop, self.out = nn.Linear(hidden, hidden), nn.Dropout(dropout), nn.Linear(hidden, labels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(torch.tanh(self.dense(h[:, 0]))))


class _FinalHead(nn.Module):
    """The student's own pooler + classifier as the last exit (not copied: shared)."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = [student]  # a list: not registered twice as a submodule

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        s = self.student[0]
        return s.classifier(s.dropout(s.bert.pooler(h)))


class SkipGate(nn.Module):
    """Probability of skipping the next layer, from its input's [CLS] vector (starts near 0)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.lin = nn.Linear(hidden, 1)
        nn.init.zeros_(self.lin.weight)
        nn.init.constant_(self.lin.bias, -2.0)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.lin(h[:, 0]).squeeze(-1).float())


def _run_layer(layer: nn.Module, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    out = layer(h, attention_mask=mask)
    return out[0] if isinstance(out, tuple) else out


def normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) divided by log(classes): 0 = certain, 1 = uniform."""
    p = torch.softmax(logits.float(), dim=-1)
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1) / math.log(logits.shape[-1])


@dataclass(frozen=True)
class EntropyExit:
    """DeeBERT / FastBERT: leave at the first layer whose normalised entropy < ``threshold``
    (0 never leaves early; above 1 always leaves after the first layer)."""

    threshold: float

    def leave(self, i: int, logits: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        if logits.shape[-1] < 2:
            raise ConfigError("the entropy policy needs a classification task; use patience for regression")
        return normalized_entropy(logits) < self.threshold


@dataclass(frozen=True)
class PatienceExit:
    """PABEE: leave once the prediction has stayed the same for ``patience`` consecutive layers
    (regression: changed by less than ``tolerance``).  Patience 0 leaves after the first layer."""

    patience: int
    tolerance: float = 0.1

    def leave(self, i: int, logits: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        pred = logits[:, 0].float() if logits.shape[-1] == 1 else logits.argmax(-1).float()
        if "prev" in state:
            same = (pred - state["prev"]).abs() < self.tolerance if logits.shape[-1] == 1 else pred == state["prev"]
            state["streak"] = torch.where(same, state["streak"] + 1, torch.zeros_like(state["streak"]))
        else:
            state["streak"] = torch.zeros_like(pred)
        state["prev"] = pred
        return state["streak"] >= self.patience


@dataclass(frozen=True)
class GateExit:
    """SmartBERT: hard skipping gates (skip layer i when its gate says p > 0.5), plus an entropy
    exit below ``threshold`` (0: gates only)."""

    threshold: float = 0.0
    gates: bool = True

    def leave(self, i: int, logits: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.threshold <= 0:
            return torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
        return EntropyExit(self.threshold).leave(i, logits, state)


class EarlyExitBert(nn.Module):
    """``student`` plus per-layer exit heads and skipping gates (see the module docstring)."""

    def __init__(self, student: nn.Module, dropout: float = 0.1) -> None:
        super().__init__()
        self.student = student
        cfg = student.config
        n, h, labels = cfg.num_hidden_layers, cfg.hidden_size, student.classifier.out_features
        self.exits = nn.ModuleList([ExitHead(h, labels, dropout) for _ in range(n - 1)])
        self.final = _FinalHead(student)
        self.gates = nn.ModuleList([SkipGate(h) for _ in range(n - 1)])  # gate i decides layer i + 1
        self.gate_mode = "off"  # off | soft | hard
        with torch.no_grad():  # exits start as copies of the final head: a sensible first guess
            for e in self.exits:
                e.dense.load_state_dict(student.bert.pooler.dense.state_dict())
                e.out.load_state_dict(student.classifier.state_dict())

    def reset_gates(self) -> None:
        """Gates back to their initial state (p(skip) = 0.12 everywhere), on the same device."""
        dev = self.gates[0].lin.weight.device if len(self.gates) else None
        for i, g in enumerate(self.gates):
            self.gates[i] = SkipGate(g.lin.in_features).to(dev)

    @property
    def layers(self) -> list[nn.Module]:
        return list(self.student.bert.encoder.layer)

    def head(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return self.final(h) if i == len(self.layers) - 1 else self.exits[i](h)

    def _embed(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        ids = inputs["input_ids"]
        h = self.student.bert.embeddings(input_ids=ids, token_type_ids=inputs.get("token_type_ids"))
        mask = inputs.get("attention_mask")
        if mask is not None and mask.dim() == 2:  # (B, L) 0/1 -> the 4-D boolean form SDPA and LSRA take
            mask = mask[:, None, None, :].bool()
            if getattr(self.student.config, "_attn_implementation", "sdpa") == "eager":
                mask = (~mask).float() * torch.finfo(torch.float32).min
        return h, mask

    def all_logits(self, inputs: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every layer's exit logits, and the mean fraction of layers run (1.0 without gates).
        Gates: ``soft`` mixes skip and run by the gate probability; ``hard`` skips at p > 0.5
        with a straight-through gradient, exactly as ``infer`` does."""
        h, mask = self._embed(inputs)
        out, ran = [], torch.zeros(h.shape[0], device=h.device)
        for i, layer in enumerate(self.layers):
            y = _run_layer(layer, h, mask)
            if i > 0 and self.gate_mode != "off":
                p = self.gates[i - 1](h)
                if self.gate_mode == "hard":
                    p = (p > 0.5).float() + p - p.detach()
                h = p[:, None, None].to(h.dtype) * h + (1 - p[:, None, None]).to(h.dtype) * y
                ran = ran + (1 - p)
            else:
                h = y
                ran = ran + 1
            out.append(self.head(i, h))
        return out, ran / len(self.layers)

    @torch.no_grad()
    def infer(self, inputs: dict[str, torch.Tensor], policy: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, labels), layers run per example (B,)) with per-example exits: rows that
        leave are dropped from the batch; rows a gate skips keep their hidden state."""
        h, mask = self._embed(inputs)
        b, n = h.shape[0], len(self.layers)
        gates = isinstance(policy, GateExit) and policy.gates
        logits_out = torch.empty(b, self.student.classifier.out_features, device=h.device)
        used = torch.zeros(b, dtype=torch.long, device=h.device)
        active = torch.arange(b, device=h.device)
        state: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            if gates and i > 0:
                run = self.gates[i - 1](h) <= 0.5
                if bool(run.all()):
                    h = _run_layer(layer, h, mask)
                elif bool(run.any()):
                    h = h.clone()
                    h[run] = _run_layer(layer, h[run], None if mask is None else mask[run])
                used[active] += run.long()
            else:
                h = _run_layer(layer, h, mask)
                used[active] += 1
            logits = self.head(i, h).float()
            leave = torch.ones_like(active, dtype=torch.bool) if i == n - 1 else policy.leave(i, logits, state)
            if bool(leave.any()):
                logits_out[active[leave]] = logits[leave]
                stay = ~leave
                active, h = active[stay], h[stay]
                mask = None if mask is None else mask[stay]
                state = {k: v[stay] for k, v in state.items()}
                if active.numel() == 0:
                    break
        return logits_out, used
