"""a BERT student --> the same student with exit heads and skipping gates (dynamic inference).

``EarlyExitBert`` wraps any student (searched or not, LSRA and pruned layers included) without
changing it: one exit classifier per layer (the last one *is* the student's own pooler and
classifier, so running every layer reproduces the static model exactly), and a skipping gate
before every layer but the first (SmartBERT).  ``all_logits`` is the training view (every
layer's logits; gates soft, or hard with a straight-through gradient); ``infer`` is batched
inference where each example leaves at its own layer: the rows still running are gathered
after every layer, so compute really drops.  Policies (``EntropyExit``, ``PatienceExit``,
``GateExit``) decide per layer which rows leave.  Invariant: batched and one-example-at-a-time
inference give the same predictions and layer counts (tested).  The heads, gates, policies and the
batched loop are the shipped model's own (``hf/exits_exprbert.py``); ``with_exits`` turns a
trained wrapper into the student a model directory holds: its exits inside, the policy in its
config, early exit off until ``config.early_exit`` turns it on.

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

import copy
from typing import Iterable, cast

import torch
from torch import nn

from exprsearch.errors import ConfigError

from .execute import to_device
from .heads import encoder_layers
from .hf.exits_exprbert import (
    EntropyExit,
    ExitHead,
    ExitPolicy,
    GateExit,
    PatienceExit,
    SkipGate,
    early_exits,
    normalized_entropy,
)
from .hf.modeling_exprbert import ExprBertForSequenceClassification, attention_mask_for
from .student import attach_spec, attached_spec

__all__ = ["EarlyExitBert", "ExitHead", "SkipGate", "EntropyExit", "PatienceExit", "GateExit", "normalized_entropy",
           "with_exits"]


class _FinalHead(nn.Module):
    """The student's own pooler + classifier as the last exit (not copied: shared)."""

    def __init__(self, student: ExprBertForSequenceClassification) -> None:
        super().__init__()
        self.student = [student]  # a list: not registered twice as a submodule

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        s = self.student[0]
        assert s.bert.pooler is not None  # EarlyExitBert checked it
        return s.classifier(s.dropout(s.bert.pooler(h)))


def _run_layer(layer: nn.Module, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    out = layer(h, attention_mask=mask)
    return out[0] if isinstance(out, tuple) else out


class EarlyExitBert(nn.Module):
    """``student`` plus per-layer exit heads and skipping gates (see the module docstring)."""

    def __init__(self, student: ExprBertForSequenceClassification, dropout: float = 0.1) -> None:
        super().__init__()
        pooler = student.bert.pooler
        if pooler is None:
            raise ConfigError("exit heads start as copies of the student's pooler and classifier: it has no pooler")
        self.student = student
        cfg = student.config
        n, h, labels = cfg.num_hidden_layers, cfg.hidden_size, student.classifier.out_features
        exits = [ExitHead(h, labels, dropout) for _ in range(n - 1)]
        self.exits = nn.ModuleList(exits)
        self.final = _FinalHead(student)
        self.gates = nn.ModuleList([SkipGate(h) for _ in range(n - 1)])  # gate i decides layer i + 1
        self.gate_mode = "off"  # off | soft | hard
        with torch.no_grad():  # exits start as copies of the final head: a sensible first guess
            for e in exits:
                e.dense.load_state_dict(pooler.dense.state_dict())
                e.out.load_state_dict(student.classifier.state_dict())

    def reset_gates(self) -> None:
        """Gates back to their initial state (p(skip) = 0.12 everywhere), on the same device."""
        gates = cast(Iterable[SkipGate], self.gates)
        dev = next(self.gates.parameters()).device if len(self.gates) else None
        for i, g in enumerate(gates):
            self.gates[i] = SkipGate(g.lin.in_features).to(dev)

    @property
    def layers(self) -> list[nn.Module]:
        return list(self.student.bert.encoder.layer)

    def head(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return self.final(h) if i == len(self.layers) - 1 else self.exits[i](h)

    def _embed(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.student.bert.embeddings(input_ids=inputs["input_ids"], token_type_ids=inputs.get("token_type_ids"))
        return h, attention_mask_for(inputs.get("attention_mask"), h, self.student.config)

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
    def infer(self, inputs: dict[str, torch.Tensor], policy: ExitPolicy) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, labels), layers run per example (B,)) with per-example exits: rows that
        leave are dropped from the batch; rows a gate skips keep their hidden state."""
        h, mask = self._embed(inputs)
        return early_exits(h, mask, self.layers, self.head, policy, self.gates)


def with_exits(model: EarlyExitBert, policy: ExitPolicy) -> ExprBertForSequenceClassification:
    """The student of ``model`` with its exit heads inside (and, for the gate policy, its gates),
    the policy and its setting in the config, ``early_exit`` off: a new model, what
    ``ship.hf.write_hf_dir`` writes.  Its state dict is ``model``'s without the ``student.`` prefix."""
    student = model.student
    config = copy.deepcopy(student.config)
    config.exit_layers = list(range(len(model.exits)))
    config.early_exit = False
    if isinstance(policy, EntropyExit):
        config.exit_policy, config.exit_threshold = "entropy", policy.threshold
    elif isinstance(policy, PatienceExit):
        config.exit_policy, config.exit_patience, config.exit_tolerance = "patience", policy.patience, policy.tolerance
    elif isinstance(policy, GateExit):
        config.exit_policy, config.exit_threshold = "gate", policy.threshold
    else:
        raise ConfigError(f"no exit policy {policy!r}: EntropyExit, PatienceExit or GateExit")
    layers = encoder_layers(student)
    out = type(student)(config, ffn=lambda i: copy.deepcopy(layers[i].ffn))
    state = {k.removeprefix("student."): v for k, v in model.state_dict().items()
             if config.exit_policy == "gate" or not k.startswith("gates.")}
    out.load_state_dict(state)
    attach_spec(out, attached_spec(student))
    out.config._attn_implementation = student.config._attn_implementation
    return to_device(out, next(student.parameters()).device).train(student.training)
