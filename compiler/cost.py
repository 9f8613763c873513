"""GraphModule --> cost: parameters, FLOPs per token and activation memory, by an fx Interpreter.

Input: a lowered FFN (or any FFN GraphModule) and its config; or a whole student model.
Output: a ``Cost``.  Invariants: ``params`` equals the parameters the graph actually reads (for a
supernet view, the slices); matrix FLOPs are 2 per multiply-accumulate and equal what
``torch.utils.flop_counter.FlopCounterMode`` counts; elementwise FLOPs use the op table's per
element ``cost`` (residual add 1, LayerNorm ``LN_COST``); width cuts are free views.  Each node's
cost is written to ``node.meta["cost"]``.

>>> import exprsearch as es
>>> from .lower import FFNConfig
>>> c = ffn_cost(es.parse("linear1_1(gelu(linear1_1(x,wb1)),wb2)"), FFNConfig(hidden=384, base_width=1536))
>>> c.params, c.mm_flops_per_token
(1182336, 2359296.0)
"""
from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn

from exprsearch.lang.expr import AttnSpec, Expr
from exprsearch.lang.ops import OPS

from .lower import CompileError, FFNConfig, blocks_of, lower, slot_instances

if TYPE_CHECKING:
    from .hf.modeling_exprbert import ExprBertPreTrainedModel

__all__ = ["Cost", "CostProp", "graph_cost", "ffn_cost", "linear_cost", "student_cost", "spec_params", "LN_COST"]

LN_COST = 5.0  # FLOPs per element of a LayerNorm (mean, variance, normalise, scale, shift)
_EW = {o.torch_fn: o for o in OPS.values() if o.torch_fn is not None}


@dataclass(frozen=True)
class Cost:
    params: int                  # parameters read
    mm_flops_per_token: float    # matrix-multiply FLOPs (2 per MAC) per token
    ew_flops_per_token: float    # elementwise FLOPs per token (op table costs, residual, LN)
    act_bytes_per_token: float   # bytes of every intermediate result per token (at ``dtype_bytes``)

    @property
    def flops_per_token(self) -> float:
        return self.mm_flops_per_token + self.ew_flops_per_token

    def __add__(self, o: "Cost") -> "Cost":
        return Cost(self.params + o.params, self.mm_flops_per_token + o.mm_flops_per_token,
                    self.ew_flops_per_token + o.ew_flops_per_token,
                    self.act_bytes_per_token + o.act_bytes_per_token)

    def as_dict(self) -> dict[str, Any]:
        return {"params": self.params, "mm_flops_per_token": self.mm_flops_per_token,
                "ew_flops_per_token": self.ew_flops_per_token, "flops_per_token": self.flops_per_token,
                "act_bytes_per_token": self.act_bytes_per_token}


class CostProp(fx.Interpreter):
    """Runs the graph on a (1, tokens, H) input and records each node's cost in ``node.meta``."""

    def __init__(self, gm: fx.GraphModule, dtype_bytes: int = 2) -> None:
        super().__init__(gm)
        self.dtype_bytes = dtype_bytes
        self.params = self.mm = self.ew = self.act = 0.0
        self.tokens = 1

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        mm = ew = params = 0.0
        if n.op == "call_function":
            if n.target is F.linear:
                vals: list[Any] = [self.env[a] if isinstance(a, fx.Node) else a for a in n.args]
                x, w, b = vals
                mm = 2.0 * w.shape[0] * w.shape[1] * out.numel() / out.shape[-1]
                params = w.numel() + (b.numel() if b is not None else 0)
                ew = out.numel()  # the bias add
            elif n.target in _EW:
                ew = _EW[n.target].cost * out.numel()
            elif n.target is operator.add:
                ew = out.numel()
        elif n.op == "call_module":
            mod = self.module.get_submodule(str(n.target))
            if isinstance(mod, nn.LayerNorm):
                ew = LN_COST * out.numel()
                params = sum(p.numel() for p in mod.parameters())
        act = out.numel() * self.dtype_bytes if n.op in ("call_function", "call_module") and \
            n.target is not operator.getitem and isinstance(out, torch.Tensor) else 0
        n.meta["cost"] = {"mm_flops": mm, "ew_flops": ew, "params": params, "act_bytes": act}
        self.mm, self.ew, self.params, self.act = self.mm + mm, self.ew + ew, self.params + params, self.act + act
        return out


def graph_cost(gm: fx.GraphModule, hidden: int, tokens: int = 4, dtype_bytes: int = 2) -> Cost:
    """Cost of an FFN GraphModule per token (its ops are all per token)."""
    p = next(gm.parameters(), None)
    x = torch.zeros(1, tokens, hidden, device=p.device if p is not None else "cpu",
                    dtype=p.dtype if p is not None else torch.float32)
    cp = CostProp(gm, dtype_bytes)
    with torch.no_grad():
        cp.run(x)
    return Cost(int(cp.params), cp.mm / tokens, cp.ew / tokens, cp.act / tokens)


@functools.lru_cache(maxsize=8192)
def ffn_cost(e: Expr, cfg: FFNConfig, dtype_bytes: int = 2) -> Cost:
    """Cost of the FFN of one layer for expression ``e`` (memoised: expressions are interned)."""
    return graph_cost(lower(e, cfg), cfg.hidden, dtype_bytes=dtype_bytes)


@functools.lru_cache(maxsize=65536)
def linear_cost(e: Expr, cfg: FFNConfig) -> tuple[int, float]:
    """(parameters, matrix FLOPs per token) of the FFN of ``e`` from its linears' shapes alone:
    the same two numbers as ``ffn_cost`` (tested), without lowering and running a graph -- some
    thousand times faster, for the search, which prices every proposal before training it.
    Per block: each linear instance's weight and bias (a gate's ``wb3`` is one more H -> d), one
    LayerNorm.

    >>> import exprsearch as es
    >>> linear_cost(es.parse("linear1_1(gelu(linear1_1(x,wb1)),wb2)"), FFNConfig(hidden=384, base_width=1536))
    (1182336, 2359296.0)
    >>> linear_cost(es.parse("linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)"), FFNConfig(hidden=384))
    (148864, 294912.0)
    """
    inst = slot_instances(e, cfg).values()
    blocks = blocks_of(e)
    params = sum(o * i + o for _, o, i in inst) + 2 * cfg.hidden
    return blocks * params, blocks * sum(2.0 * o * i for _, o, i in inst)


def attention_params(attn: AttnSpec | None, hidden: int, heads: int) -> int:
    """Parameters of one layer's attention block (self-attention, output projection, LayerNorm)."""
    from .attention import lsra_params
    h = hidden
    if attn is not None and attn.kind == "lsra":
        return lsra_params(h, attn.kernel or 7) + h * h + h + 2 * h
    width = h if attn is None or attn.heads is None else attn.heads * (h // heads)
    return 3 * (h * width + width) + width * h + h + 2 * h


def spec_params(layers: list[Expr], cfg: FFNConfig, *, vocab: int, max_position: int, type_vocab: int,
                num_labels: int, attn: Sequence[AttnSpec | None] | None = None, heads: int = 12) -> int:
    """Parameters of a whole BERT student for the per-layer expressions, without building it:
    embeddings (+ LayerNorm), per layer attention Q, K, V, O (+ LayerNorm) and the FFN from its
    linears' shapes (``linear_cost``), pooler and classifier.  Equals ``sum(p.numel())`` of
    ``build_student`` (tested)."""
    h = cfg.hidden
    total = (vocab + max_position + type_vocab) * h + 2 * h
    total += sum(attention_params(a, h, heads) for a in (attn or (None,) * len(layers)))
    total += sum(linear_cost(e, cfg)[0] for e in layers)
    return total + h * h + h + h * num_labels + num_labels


def head_flops(hidden: int, labels: int, seq_len: int) -> float:
    """Pooler + classifier matmul FLOPs, once per sequence, spread over its ``seq_len`` tokens."""
    return (2.0 * hidden * hidden + 2.0 * hidden * labels) / seq_len


def student_cost(model: ExprBertPreTrainedModel, seq_len: int, dtype_bytes: int = 2) -> dict[str, Any]:
    """Parameters (exact) and FLOPs per token of a whole BERT student at sequence length ``seq_len``.

    Attention (per layer, as built: pruned heads, LSRA): projections + scores and weighted sum;
    FFNs: the cost model above; pooler and classifier counted once per sequence, divided by L."""
    from .hf.modeling_exprbert import ExprBertForSequenceClassification
    from .student import ffn_modules  # avoid an import cycle
    cfg = model.config
    h = cfg.hidden_size
    ffn = Cost(0, 0.0, 0.0, 0.0)
    for gm in ffn_modules(model):
        if not isinstance(gm, fx.GraphModule):
            raise CompileError(f"costing needs lowered FFNs (torch.fx graphs), not {type(gm).__name__}")
        ffn = ffn + graph_cost(gm, h, dtype_bytes=dtype_bytes)
    from .attention import module_attention_flops
    from .heads import encoder_layers
    attn_mm = sum(module_attention_flops(layer, h, seq_len) for layer in encoder_layers(model))
    head_mm = (head_flops(h, model.classifier.out_features, seq_len)
               if isinstance(model, ExprBertForSequenceClassification) else 0.0)
    params = sum(p.numel() for p in model.parameters())
    return {"params": params, "ffn_params": ffn.params, "mm_flops_per_token": attn_mm + ffn.mm_flops_per_token + head_mm,
            "ffn": ffn.as_dict(), "attention_mm_flops_per_token": attn_mm, "seq_len": seq_len}
