"""Long-Short Range Attention (Lite Transformer, Wu et al. 2020) for ExprBert layers.

LSRA splits the channels in two: the first half goes through multi-head attention, the second
through a lightweight branch -- a linear map with a GLU, a depthwise 1-D convolution of width
``kernel`` over the sequence, a linear map; the halves are concatenated.  ``LSRASelfAttention``
stands in for BERT's self-attention (BERT's output projection, residual and LayerNorm follow).
Padding never leaks into the convolution.  Part of every model directory exprsearch ships
(copied verbatim: it imports only torch).

>>> m = LSRASelfAttention(hidden=16, heads=2, kernel=3).eval()
>>> out, _ = m(torch.randn(2, 5, 16), torch.ones(2, 1, 1, 5, dtype=torch.bool))
>>> out.shape
torch.Size([2, 5, 16])
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LSRACore", "LSRASelfAttention"]


class LSRACore(nn.Module):
    """Long-Short Range Attention's tensor program: ``forward(x, bias, keep)`` with ``bias`` an
    additive (B, 1, 1, L) attention mask and ``keep`` the (B, L, 1) 0/1 mask of real tokens.
    The first half of the channels goes through ``heads``-head attention, the second through a
    GLU, a depthwise convolution of width ``kernel`` over the sequence and a linear map."""

    def __init__(self, hidden: int, heads: int, kernel: int = 7, dropout: float = 0.1) -> None:
        super().__init__()
        half = hidden // 2
        if hidden % 2 or half % heads:
            raise ValueError(f"lsra: hidden {hidden} must be even and hidden/2 a multiple of heads {heads}")
        if kernel % 2 == 0:
            raise ValueError(f"lsra: kernel {kernel} must be odd (same-length convolution)")
        self.half_width, self.heads, self.head_dim = half, heads, half // heads  # not `half`: Module.half()
        self.query, self.key, self.value = (nn.Linear(half, half) for _ in range(3))
        self.drop = nn.Dropout(dropout)
        self.glu = nn.Linear(half, 2 * half)
        self.conv = nn.Conv1d(half, half, kernel, padding=kernel // 2, groups=half)
        self.conv_out = nn.Linear(half, half)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, n = x.shape[0], x.shape[1]
        xa, xc = x[..., :self.half_width], x[..., self.half_width:]
        q = self.query(xa).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.key(xa).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        v = self.value(xa).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        att = self.drop(att.transpose(1, 2).reshape(b, n, self.half_width))
        c = F.glu(self.glu(xc), dim=-1) * keep.to(xc.dtype)
        c = self.conv(c.transpose(1, 2)).transpose(1, 2)
        return torch.cat([att, self.conv_out(c)], dim=-1)


class LSRASelfAttention(nn.Module):
    """Stands in for BertSelfAttention: turns the attention mask (None, (B, L), or 4-D boolean or
    additive) into the core's ``bias`` and ``keep``; BERT's output projection follows."""

    def __init__(self, hidden: int, heads: int, kernel: int = 7, dropout: float = 0.1) -> None:
        super().__init__()
        self.core = LSRACore(hidden, heads, kernel, dropout)
        self.heads, self.kernel = heads, kernel

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                *args: object, **kwargs: object) -> tuple[torch.Tensor, None]:
        b, n = hidden_states.shape[:2]
        if attention_mask is None:
            keep = torch.ones(b, n, device=hidden_states.device, dtype=torch.bool)
        else:  # padding masks have identical rows
            m = attention_mask.reshape(b, -1, attention_mask.shape[-1])[:, -1]
            keep = (m == 0) if m.is_floating_point() else m.bool()
        bias = torch.zeros(b, 1, 1, n, device=hidden_states.device, dtype=torch.float32)
        bias = bias.masked_fill(~keep[:, None, None, :], torch.finfo(torch.float32).min)
        return self.core(hidden_states, bias, keep[..., None].float()), None
