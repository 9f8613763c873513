"""attention specs --> costs and graphs: Long-Short Range Attention (Lite Transformer) and pruned heads.

The modules themselves are the shipped model's (``hf/lsra_exprbert.py``: ``LSRASelfAttention``
stands in for HF's ``BertSelfAttention`` and returns ``(context, None)``; BERT's own output
projection then mixes the channels, residual and LayerNorm follow).  LSRA splits the channels in
two: H/2 go through multi-head attention with ``h`` heads, H/2 through a lightweight branch --
a linear map with a GLU, then a depthwise 1-D convolution of width ``k`` over the sequence, then
a linear map; the halves are concatenated.  Here: its tensor program as an fx graph
(``lsra_graph``: the same ``LSRACore`` traced, for printing and costing), parameters and
matmul FLOPs per token of a layer's attention as a spec prices it and as a built model has it.
Invariant: priced and built FLOPs agree (tested); padding positions never leak into the
convolution.

>>> import torch
>>> m = LSRASelfAttention(hidden=16, heads=2, kernel=3).eval()
>>> out, _ = m(torch.randn(2, 5, 16), torch.ones(2, 1, 1, 5, dtype=torch.bool))
>>> out.shape
torch.Size([2, 5, 16])
>>> "conv" in lsra_graph(16, 2, 3).code
True
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from torch import fx

from exprsearch.lang.expr import AttnSpec

from .hf.lsra_exprbert import LSRACore, LSRASelfAttention

if TYPE_CHECKING:
    from .hf.modeling_exprbert import ExprBertLayer

__all__ = ["LSRACore", "LSRASelfAttention", "lsra_graph", "attention_mm_flops", "layer_attention_flops",
           "module_attention_flops", "lsra_params", "lsra_heads"]


def lsra_graph(hidden: int, heads: int, kernel: int = 7, dropout: float = 0.1) -> fx.GraphModule:
    """LSRA's tensor program as an fx graph (``gm.code`` prints it; costing and tests read it): the
    traced ``LSRACore`` of the model's own code, with the same parameters' names."""
    return fx.symbolic_trace(LSRACore(hidden, heads, kernel, dropout))


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


def layer_attention_flops(spec: AttnSpec | None, hidden: int, heads: int, seq: int) -> float:
    """FLOPs per token of one layer's attention block as ``spec`` (an ``AttnSpec`` or None for
    standard MHA) builds it in a model with ``heads`` heads, output projection included."""
    if spec is not None and spec.kind == "lsra":
        return attention_mm_flops("lsra", hidden, lsra_heads(spec, heads), seq, spec.kernel or 7) + 2.0 * hidden * hidden
    kept = heads if spec is None or not spec.heads else spec.heads
    width = kept * (hidden // heads)
    return attention_mm_flops("mha", hidden, kept, seq, head_dim=hidden // heads) + 2.0 * width * hidden


def module_attention_flops(layer: ExprBertLayer, hidden: int, seq: int) -> float:
    """The same for a built HF ``BertLayer`` (LSRA or MHA with possibly pruned heads)."""
    sa = layer.attention.self
    if isinstance(sa, LSRASelfAttention):
        return attention_mm_flops("lsra", hidden, sa.heads, seq, sa.kernel) + 2.0 * hidden * hidden
    hd = sa.attention_head_size
    kept = sa.query.out_features // hd
    return attention_mm_flops("mha", hidden, kept, seq, head_dim=hd) + 2.0 * kept * hd * hidden


def lsra_heads(spec: AttnSpec, full: int) -> int:
    """Heads of an LSRA layer: its own field, else half the model's (it sees half the channels)."""
    return spec.heads or max(1, full // 2)
