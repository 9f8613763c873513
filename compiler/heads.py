"""attention heads: importance from gradients of head masks, and physical pruning.

``head_importance`` (Michel et al., "Are Sixteen Heads Really Better than One?"): a mask of
ones multiplies each head's output; the importance of a head is the mean |d loss / d mask| over
task batches, L2-normalised within each layer.  ``prune_heads`` removes heads for good: the
query/key/value rows and the output projection's columns of the dropped heads are cut, so
parameters and latency drop.  Invariant: a pruned model computes exactly what the unpruned model
computes with those heads' masks set to zero (tested).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

import torch
from torch import nn

from .hf.lsra_exprbert import LSRASelfAttention

if TYPE_CHECKING:
    from .hf.modeling_exprbert import ExprBertLayer

__all__ = ["encoder_layers", "head_masks", "head_importance", "prune_heads", "heads_of", "keep_top"]


def encoder_layers(model: nn.Module) -> list[ExprBertLayer]:
    """The transformer layers of a BERT model or of its classification wrapper."""
    base: Any = getattr(model, "bert", model)
    return list(base.encoder.layer)


def _is_mha(layer: ExprBertLayer) -> bool:
    return hasattr(layer.attention.self, "attention_head_size")


def heads_of(layer: ExprBertLayer) -> int:
    """Heads of a layer's multi-head attention (an LSRA layer: its attention branch's heads)."""
    s = layer.attention.self
    if isinstance(s, LSRASelfAttention):
        return s.heads
    return s.query.out_features // s.attention_head_size


@contextmanager
def head_masks(model: nn.Module, masks: torch.Tensor) -> Iterator[torch.Tensor]:
    """While active, head h of layer i is scaled by ``masks[i, h]`` (a forward hook on each
    layer's self-attention; works with SDPA and eager attention)."""
    hooks = []
    for i, layer in enumerate(encoder_layers(model)):
        if not _is_mha(layer):  # LSRA: no per-head mask (its importance row stays 0)
            continue
        s = layer.attention.self

        def hook(mod: nn.Module, args: Any, out: Any, i: int = i) -> Any:
            ctx = out[0]
            b, n, w = ctx.shape
            scaled = (ctx.view(b, n, -1, mod.attention_head_size) * masks[i, : w // mod.attention_head_size, None]
                      .to(ctx.dtype)).view(b, n, w)
            return (scaled,) + tuple(out[1:])

        hooks.append(s.register_forward_hook(hook))
    try:
        yield masks
    finally:
        for h in hooks:
            h.remove()


class _Batches(Protocol):
    def forever(self) -> Iterator[Any]: ...


def head_importance(model: nn.Module, batches: _Batches, loss_fn: Callable[[Any], torch.Tensor], steps: int = 20
                    ) -> torch.Tensor:
    """(layers, heads) importance scores over ``steps`` batches of ``batches.forever()``."""
    layers = encoder_layers(model)
    dev = next(model.parameters()).device
    masks = torch.ones(len(layers), max(heads_of(l) for l in layers), device=dev, requires_grad=True)
    score = torch.zeros_like(masks)
    stream = batches.forever()
    was = model.training
    model.eval()
    with head_masks(model, masks):
        for _ in range(steps):
            loss = loss_fn(next(stream))
            grad, = torch.autograd.grad(loss, masks)
            score += grad.abs().detach()
    model.train(was)
    score = score / steps
    return score / score.norm(dim=1, keepdim=True).clamp_min(1e-12)


def keep_top(importance: torch.Tensor, heads: list[int | None]) -> dict[int, list[int]]:
    """For layer i keep its ``heads[i]`` most important heads (sorted indices); None: leave it."""
    return {i: sorted(torch.argsort(importance[i], descending=True)[:h].tolist())
            for i, h in enumerate(heads) if h is not None}


@torch.no_grad()
def prune_heads(model: nn.Module, keep: dict[int, list[int]]) -> None:
    """Keep only ``keep[i]`` heads (indices among its current heads) in layer i, other layers
    untouched; the model's config records the heads removed (``pruned_heads``: indices among the
    layer's original heads), so it still describes the model."""
    from .hf.modeling_exprbert import keep_heads
    config: Any = getattr(model, "config", None)  # an ExprBertConfig records the heads; another config may not
    record = isinstance(getattr(config, "pruned_heads", None), dict)
    for i, layer in enumerate(encoder_layers(model)):
        if i not in keep or not _is_mha(layer):
            continue
        if record:
            full = config.num_attention_heads
            now = [h for h in range(full) if h not in config.pruned_heads.get(i, ())]  # current -> original
            kept = {now[j] for j in keep[i]}
            config.pruned_heads[i] = [h for h in range(full) if h not in kept]
            if not config.pruned_heads[i]:
                del config.pruned_heads[i]
        keep_heads(layer.attention, keep[i])
