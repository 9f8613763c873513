"""attention specs --> modules: Long-Short Range Attention (Lite Transformer), compiled with fx.

Input: an ``AttnSpec`` (``lsra(heads=h, kernel=k)``) and the model width H.  Output: a module that
stands in for HF's ``BertSelfAttention`` (it returns ``(context, None)``; BERT's own output
projection then mixes the channels, residual and LayerNorm follow).  LSRA splits the channels in
two: H/2 go through multi-head attention with ``h`` heads, H/2 through a lightweight branch --
a linear map with a GLU, then a depthwise 1-D convolution of width ``k`` over the sequence, then
a linear map; the halves are concatenated.  Invariant: the tensor program is an fx GraphModule
(``LSRACore``, traced once per shape) whose code can be printed and costed; padding positions
never leak into the convolution.

>>> import torch
>>> m = LSRASelfAttention(hidden=16, heads=2, kernel=3).eval()
>>> out, _ = m(torch.randn(2, 5, 16), torch.ones(2, 1, 1, 5, dtype=torch.bool))
>>> out.shape
torch.Size([2, 5, 16])
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from exprsearch.errors import ConfigError

__all__ = ["LSRACore", "LSRASelfAttention", "attention_mm_flops", "layer_attention_flops", "module_attention_flops",
           "lsra_params", "lsra_heads", "apply_attn"]


class LSRACore(nn.Module):
    """The tensor program: ``forward(x, bias, keep)`` with ``bias`` an additive (B, 1, 1, L)
    attention mask and ``keep`` the (B, L, 1) 0/1 mask of real tokens."""

    def __init__(self, hidden: int, heads: int, kernel: int = 7, dropout: float = 0.1) -> None:
        super().__init__()
        half = hidden // 2
        if hidden % 2 or half % heads:
            raise ConfigError(f"lsra: hidden {hidden} must be even and hidden/2 a multiple of heads {heads}")
        if kernel % 2 == 0:
            raise ConfigError(f"lsra: kernel {kernel} must be odd (same-length convolution)")
        self.half, self.heads, self.head_dim = half, heads, half // heads
        self.query, self.key, self.value = (nn.Linear(half, half) for _ in range(3))
        self.drop = nn.Dropout(dropout)  # a module, so the traced graph follows the train/inference mode
        self.glu = nn.Linear(half, 2 * half)
        self.conv = nn.Conv1d(half, half, kernel, padding=kernel // 2, groups=half)
        self.conv_out = nn.Linear(half, half)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, n = x.shape[0], x.shape[1]
        xa, xc = x[..., :self.half], x[..., self.half:]
        q = self.query(xa).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.key(xa).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        v = self.value(xa).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        att = self.drop(att.transpose(1, 2).reshape(b, n, self.half))
        c = F.glu(self.glu(xc), dim=-1) * keep.to(xc.dtype)
        c = self.conv(c.transpose(1, 2)).transpose(1, 2)
        return torch.cat([att, self.conv_out(c)], dim=-1)


class LSRASelfAttention(nn.Module):
    """HF-compatible wrapper: turns BERT's attention mask (None, 4-D bool or additive float) into
    the core's ``bias`` and ``keep`` and runs the traced core."""

    def __init__(self, hidden: int, heads: int, kernel: int = 7, dropout: float = 0.1) -> None:
        super().__init__()
        self.core = fx.symbolic_trace(LSRACore(hidden, heads, kernel, dropout))
        self.heads, self.kernel = heads, kernel

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
        b, n = hidden_states.shape[:2]
        if attention_mask is None:
            keep = torch.ones(b, n, device=hidden_states.device, dtype=torch.bool)
        else:  # (B, L), (B, 1, 1, L) or (B, 1, L, L): padding masks have identical rows
            m = attention_mask.reshape(b, -1, attention_mask.shape[-1])[:, -1]
            keep = (m == 0) if m.is_floating_point() else m.bool()  # additive float, or bool / 0-1 integer
        bias = torch.zeros(b, 1, 1, n, device=hidden_states.device, dtype=torch.float32)
        bias = bias.masked_fill(~keep[:, None, None, :], torch.finfo(torch.float32).min)
        return self.core(hidden_states, bias, keep[..., None].float()), None


def lsra_params(hidden: int, kernel: int) -> int:
    """Parameters of the LSRA core (BERT's output projection not included)."""
    half = hidden // 2
    return 3 * (half * half + half) + (half * 2 * half + 2 * half) + (kernel * half + half) + (half * half + half)


def attention_mm_flops(kind: str, hidden: int, heads: int, seq: int, kernel: int = 7,
                       head_dim: int | None = None) -> float:
    """Matmul/convolution FLOPs per token of the attention core (projections, scores, weighted
    sum; for LSRA also the GLU and convolution branch), excluding BERT's output projection.
    MHA heads have ``head_dim`` channels (default ``hidden // heads``; pruning keeps their size)."""
    if kind == "mha":
        width = heads * (head_dim or hidden // heads)
        return 2.0 * 3 * hidden * width + 4.0 * seq * width
    half = hidden // 2
    return 2.0 * 3 * half * half + 4.0 * seq * half + 2.0 * half * 2 * half + 2.0 * kernel * half + 2.0 * half * half


def layer_attention_flops(spec: Any, hidden: int, heads: int, seq: int) -> float:
    """FLOPs per token of one layer's attention block as ``spec`` (an ``AttnSpec`` or None for
    standard MHA) builds it in a model with ``heads`` heads, output projection included."""
    if spec is not None and spec.kind == "lsra":
        return attention_mm_flops("lsra", hidden, lsra_heads(spec, heads), seq, spec.kernel or 7) + 2.0 * hidden * hidden
    kept = heads if spec is None or not spec.heads else spec.heads
    width = kept * (hidden // heads)
    return attention_mm_flops("mha", hidden, kept, seq, head_dim=hidden // heads) + 2.0 * width * hidden


def module_attention_flops(layer: nn.Module, hidden: int, seq: int) -> float:
    """The same for a built HF ``BertLayer`` (LSRA or MHA with possibly pruned heads)."""
    sa = layer.attention.self
    if isinstance(sa, LSRASelfAttention):
        return attention_mm_flops("lsra", hidden, sa.heads, seq, sa.kernel) + 2.0 * hidden * hidden
    hd = sa.attention_head_size
    kept = sa.query.out_features // hd
    return attention_mm_flops("mha", hidden, kept, seq, head_dim=hd) + 2.0 * kept * hd * hidden


def lsra_heads(spec: Any, full: int) -> int:
    """Heads of an LSRA layer: its own field, else half the model's (it sees half the channels)."""
    return spec.heads or max(1, full // 2)


def apply_attn(layer: nn.Module, spec: Any, config: Any) -> None:
    """Make a HF BertLayer's self-attention what ``spec`` (an ``AttnSpec``) says: LSRA, or MHA
    with fewer heads (the first ones are kept; ``heads.prune_heads`` chooses by importance)."""
    from .heads import heads_of, prune_heads
    if spec is None:
        return
    full = config.num_attention_heads
    if spec.kind == "lsra":
        layer.attention.self = LSRASelfAttention(config.hidden_size, lsra_heads(spec, full), spec.kernel or 7,
                                                 config.attention_probs_dropout_prob)
        return
    if spec.heads is not None:
        if spec.heads > full:
            raise ConfigError(f"mha(heads={spec.heads}): the model has {full} heads per layer")
        if spec.heads < heads_of(layer):
            prune_heads(_Single(layer), {0: list(range(spec.heads))})


class _Single(nn.Module):
    """One layer presented as a model (``encoder.layer == [layer]``) for ``prune_heads``."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.layer = [layer]
