"""LayerDrop (Fan et al.): train with whole layers skipped at random, then extract shallower
students without retraining.

``install_layerdrop`` lets each BERT layer be skipped (its forward returns its input; hooks still
fire, so hidden-state capture keeps one entry per layer).  ``every_other(p, n)`` is the paper's
rule -- with drop rate p, drop layers d with d mod floor(1/p) == 0 -- and ``extract_layers``
copies the kept layers into a new, shallower student.  Invariant: the extracted student computes
exactly what the full model computes with the dropped layers skipped (tested).
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from exprsearch.errors import ConfigError

from .heads import encoder_layers

if TYPE_CHECKING:
    from .hf.modeling_exprbert import ExprBertForSequenceClassification

__all__ = ["install_layerdrop", "set_skips", "sample_skips", "every_other", "extract_layers"]


def install_layerdrop(model: nn.Module) -> None:
    """Make every layer skippable (idempotent)."""
    for layer in encoder_layers(model):
        if hasattr(layer, "_full_forward"):
            continue
        patched: Any = layer  # gains _full_forward and _skip; its forward is replaced
        patched._full_forward = layer.forward
        patched._skip = False

        def forward(hidden_states: torch.Tensor, *args: Any, _layer: Any = layer, **kw: Any) -> Any:
            if _layer._skip:
                return hidden_states, None  # what a layer returns: its output, no attention probabilities
            return _layer._full_forward(hidden_states, *args, **kw)

        patched.forward = forward


def set_skips(model: nn.Module, skips: set[int] | list[int]) -> None:
    install_layerdrop(model)
    s = set(skips)
    for i, layer in enumerate(encoder_layers(model)):
        setattr(layer, "_skip", i in s)


def sample_skips(n: int, p: float, rng: random.Random) -> set[int]:
    """Each layer independently with probability p (never all of them)."""
    skips = {i for i in range(n) if rng.random() < p}
    return skips if len(skips) < n else skips - {rng.randrange(n)}


def every_other(p: float, n: int) -> list[int]:
    """Layers kept by the every-other rule: drop d with d mod floor(1/p) == 0.

    >>> every_other(0.5, 6), every_other(0.25, 8)
    ([1, 3, 5], [1, 2, 3, 5, 6, 7])
    """
    if not 0 < p <= 0.5:
        raise ConfigError(f"layer drop rate {p}: the every-other rule needs 0 < p <= 0.5 (above, it drops every layer)")
    k = int(1 / p)
    return [d for d in range(n) if d % k != 0]


@torch.no_grad()
def extract_layers(model: ExprBertForSequenceClassification, keep: list[int]) -> ExprBertForSequenceClassification:
    """A new student made of layers ``keep`` of ``model``."""
    from .student import attached_spec, shallower_config, student_from_config
    n = model.config.num_hidden_layers
    if not keep or any(not 0 <= i < n for i in keep) or len(set(keep)) != len(keep):
        raise ConfigError(f"keep {keep}: distinct layers of 0..{n - 1}")
    small = student_from_config(shallower_config(model.config, keep), attached_spec(model).with_layers(keep))
    theirs = model.state_dict()
    mine = small.state_dict()
    for name in mine:
        src = name
        if ".encoder.layer." in name:
            head, rest = name.split(".encoder.layer.", 1)
            j, tail = rest.split(".", 1)
            src = f"{head}.encoder.layer.{keep[int(j)]}.{tail}"
        if src not in theirs:
            continue
        if theirs[src].shape != mine[name].shape:
            raise ConfigError(f"extract_layers: {src} has shape {tuple(theirs[src].shape)}, the shallower "
                              f"student expects {tuple(mine[name].shape)}")
        mine[name].copy_(theirs[src])
    small.config._attn_implementation = model.config._attn_implementation
    return small
