"""model spec --> its price (parameters: total, non-embedding, FFN; FLOPs) and the budgets it must meet.

Input: a parsed ``ModelSpec``, the evaluation protocol and the teacher's config (for H, heads,
vocabulary, the teacher's own FFN size).  Output: a ``Price`` from the cost model, without building
a model (equal to what the evaluator measures on the built student: tested), and ``Budget``s
parsed from the search options: ``10M`` (total parameters), ``standard`` (the standard-FFN
student's total), ``ffn:50%`` or ``ffn:2.3M`` (the FFNs' parameters: a share of the *teacher's*
FFN parameters, or a count), ``nonembed:5.7M`` or ``nonembed:40%`` (everything but the embeddings).
Why: embeddings are 69 % of a 6-layer, 384-wide student and its FFNs 10 %, so a total-parameter
budget leaves the FFN almost nothing to trade; an FFN budget is the one the FFN search can use.

>>> parse_budget("10M"), parse_budget("500k")
(10000000.0, 500000.0)
>>> b = Budget.parse("ffn:50%")
>>> b.kind, b.share
('ffn', 0.5)
>>> b.limit(Price(params=17_000_000, ffn_params=1_000_000, nonembed_params=5_000_000, flops=1e7),
...         teacher=Price(params=22_700_000, ffn_params=7_100_000, nonembed_params=10_700_000, flops=0.0))
3550000.0
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exprsearch.errors import ConfigError
from exprsearch.lang.expr import ModelSpec

__all__ = ["Price", "Budget", "parse_budget", "price_spec", "teacher_price"]


def parse_budget(text: str | float | None) -> float | None:
    """'10M' -> 1e7, '500k' -> 5e5, '2.5e6' -> 2.5e6 ('' or None: no budget)."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        return float(text)
    t = str(text).strip().upper()
    mult = {"K": 1e3, "M": 1e6, "G": 1e9}.get(t[-1:], 1.0)
    try:
        return float(t[:-1] if mult != 1.0 else t) * mult
    except ValueError:
        raise ConfigError(f"budget {text!r}: write e.g. 10M, 500k or 2.5e6") from None


@dataclass(frozen=True)
class Price:
    params: int             # every parameter of the student
    ffn_params: int         # its FFNs' (all layers)
    nonembed_params: int    # all but the word, position and type embeddings (and their LayerNorm)
    flops: float            # matmul FLOPs per token (sequence length min(max_len, 128))


@dataclass(frozen=True)
class Budget:
    """A parameter budget: ``kind`` total | ffn | nonembed; ``count`` or ``share`` of the teacher's
    (``standard``: the standard-FFN student's total, resolved by the search)."""

    kind: str = "total"
    count: float | None = None
    share: float | None = None
    standard: bool = False

    @classmethod
    def parse(cls, text: str) -> "Budget | None":
        t = (text or "").strip().lower()
        if not t:
            return None
        if t == "standard":
            return cls(standard=True)
        kind, _, value = t.rpartition(":") if ":" in t else ("total", "", t)
        if kind not in ("total", "ffn", "nonembed"):
            raise ConfigError(f"budget {text!r}: the kinds are ffn:, nonembed: or none (total), e.g. ffn:50%")
        if value.endswith("%"):
            try:
                share = float(value[:-1]) / 100
            except ValueError:
                raise ConfigError(f"budget {text!r}: write a share as e.g. ffn:50%") from None
            if kind == "total" or not 0 < share:
                raise ConfigError(f"budget {text!r}: a share needs ffn: or nonembed: and a positive percentage")
            return cls(kind, share=share)
        count = parse_budget(value)
        if count is None or count <= 0:
            raise ConfigError(f"budget {text!r}: the budget must be positive")
        return cls(kind, count=count)

    def limit(self, standard: Price | None = None, teacher: Price | None = None) -> float:
        """The most parameters of ``kind`` a candidate may have."""
        if self.standard:
            return float(standard.params) if standard else float("inf")
        if self.count is not None:
            return self.count
        ref = {"ffn": teacher.ffn_params, "nonembed": teacher.nonembed_params}[self.kind] if teacher else 0
        return self.share * ref

    def measure(self, p: Price) -> int:
        return {"total": p.params, "ffn": p.ffn_params, "nonembed": p.nonembed_params}[self.kind]


def price_spec(spec: ModelSpec, ecfg: Any, tc: dict[str, Any], num_labels: int) -> Price:
    """The price of ``spec`` for protocol ``ecfg`` and teacher config ``tc`` (cost model only)."""
    from exprsearch.compiler import FFNConfig
    from exprsearch.compiler.attention import layer_attention_flops
    from exprsearch.compiler.cost import head_flops, linear_cost, spec_params
    h, heads = tc["hidden_size"], tc["num_attention_heads"]
    cfg = FFNConfig(hidden=h, base_width=ecfg.base_width)
    vocab, pos, types = tc["vocab_size"], tc["max_position_embeddings"], tc.get("type_vocab_size", 2)
    params = spec_params(list(spec.layers), cfg, vocab=vocab, max_position=pos, type_vocab=types,
                         num_labels=num_labels, attn=spec.attn, heads=heads)
    seq = min(ecfg.max_len, 128)
    costs = [linear_cost(e, cfg) for e in spec.layers]  # (params, FLOPs) of each layer's FFN
    ffn = sum(c[0] for c in costs)
    flops = sum(c[1] for c in costs) + head_flops(h, num_labels, seq)
    flops += sum(layer_attention_flops(a, h, heads, seq) for a in spec.attn or (None,) * len(spec.layers))
    embed = (vocab + pos + types) * h + 2 * h
    return Price(params, ffn, params - embed, flops)


def teacher_price(tc: dict[str, Any], num_labels: int) -> Price:
    """The teacher's own parameters: its FFNs are BERT's (H -> I -> H, LayerNorm) in every layer."""
    h, inner, layers = tc["hidden_size"], tc["intermediate_size"], tc["num_hidden_layers"]
    vocab, pos, types = tc["vocab_size"], tc["max_position_embeddings"], tc.get("type_vocab_size", 2)
    ffn = layers * (h * inner + inner + inner * h + h + 2 * h)
    attn = layers * (4 * (h * h + h) + 2 * h)
    embed = (vocab + pos + types) * h + 2 * h
    params = embed + attn + ffn + h * h + h + h * num_labels + num_labels
    return Price(params, ffn, params - embed, 0.0)
