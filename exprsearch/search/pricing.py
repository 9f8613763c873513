"""model spec --> its price (parameters: total, non-embedding, FFN; FLOPs) and the budgets it must meet.

Input: a parsed ``ModelSpec``, the evaluation protocol and the teacher's config (for H, heads,
vocabulary, the teacher's own FFN size).  Output: a ``Price`` from the cost model, without building
a model (equal to what the evaluator measures on the built student: tested); ``Budget``s parsed
from the search options; and ``resolve``: a budget's limit and the run's **baseline** -- the
width-matched standard FFN ``linear1_Y(gelu(linear1_Y(x,wb1)),wb2)``, the widest one within the
budget (an error when none fits: no silent fallback to the full-width FFN).
Budgets: ``10M`` (total parameters), ``standard`` (the full-width standard-FFN student's total),
``ffn:50%`` / ``ffn:d=768`` (at most the FFN parameters of the standard FFN at d = 50 % of D, or at
d = 768 -- biases and LayerNorm included, so that baseline fits exactly; d must be one of the
space's widths D/Y), ``ffn:2.3M`` (an FFN parameter count), ``nonembed:5.7M`` or ``nonembed:40%``
(everything but the embeddings; a share of the *teacher's*).
Why: embeddings are 69 % of a 6-layer, 384-wide student and its FFNs 10 %, so a total-parameter
budget leaves the FFN almost nothing to trade; an FFN budget is the one the FFN search can use.

>>> parse_budget("10M"), parse_budget("500k")
(10000000.0, 500000.0)
>>> b = Budget.parse("ffn:50%")
>>> b.kind, b.share, b.ratio(1536)
('ffn', 0.5, 2)
>>> Budget.parse("ffn:d=384").ratio(1536), Budget.parse("ffn:2.3M").ratio(1536)
(4, None)
>>> Budget.parse("ffn:40%").ratio(1536)
Traceback (most recent call last):
exprsearch.errors.ConfigError: budget ffn:40% means the standard FFN at d = 614.4, not a width of the space (D = 1536): ffn:100% (d=1536), ffn:50% (d=768), ffn:33.3% (d=512), ffn:25% (d=384), or give a count (ffn:2.3M)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from exprsearch.errors import ConfigError
from exprsearch.lang.expr import ModelSpec
from exprsearch.lang.ops import RATIO_CHOICES
from exprsearch.lang.standard import standard_ffn

if TYPE_CHECKING:
    from exprsearch.kd.protocol import EvalConfig

__all__ = ["Price", "Budget", "parse_budget", "price_spec", "teacher_price", "resolve", "standards", "matched_standard"]


def parse_budget(text: str | float | None) -> float | None:
    """'10M' -> 1e7, '500k' -> 5e5, '2.5e6' -> 2.5e6 ('' or None: no budget); a budget that is not
    a positive finite number is a ConfigError."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        t = str(text).strip().upper()
        mult = {"K": 1e3, "M": 1e6, "G": 1e9}.get(t[-1:], 1.0)
        try:
            value = float(t[:-1] if mult != 1.0 else t) * mult
        except ValueError:
            raise ConfigError(f"budget {text!r}: write e.g. 10M, 500k or 2.5e6") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"budget {text!r}: a budget is a positive number, e.g. 10M")
    return value


@dataclass(frozen=True)
class Price:
    params: int             # every parameter of the student
    ffn_params: int         # its FFNs' (all layers)
    nonembed_params: int    # all but the word, position and type embeddings (and their LayerNorm)
    flops: float            # matmul FLOPs per token (sequence length min(max_len, 128))

    def row(self) -> dict[str, float]:
        """The store's cost columns of a candidate priced without its own evaluation (stage 3).

        >>> Price(params=10, ffn_params=4, nonembed_params=6, flops=2.5).row()
        {'params': 10, 'ffn_params': 4, 'flops': 2.5}
        """
        return {"params": self.params, "ffn_params": self.ffn_params, "flops": self.flops}


@dataclass(frozen=True)
class Budget:
    """A parameter budget: ``kind`` total | ffn | nonembed and one of ``count``; ``share`` (ffn: of
    the base width D, meaning the standard FFN at d = share x D; nonembed: of the teacher's
    non-embedding parameters); ``width`` (ffn: the standard FFN at this d); ``standard`` (the
    full-width standard-FFN student's total)."""

    kind: str = "total"
    count: float | None = None
    share: float | None = None
    width: int | None = None
    standard: bool = False
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> "Budget | None":
        t = (text or "").strip().lower()
        if not t:
            return None
        if t == "standard":
            return cls(standard=True, text=t)
        kind, _, value = t.rpartition(":") if ":" in t else ("total", "", t)
        if kind not in ("total", "ffn", "nonembed"):
            raise ConfigError(f"budget {text!r}: the kinds are ffn:, nonembed: or none (total), e.g. ffn:50%")
        if value.startswith("d="):
            if kind != "ffn":
                raise ConfigError(f"budget {text!r}: a width (d=N) is an FFN budget: ffn:d=768")
            try:
                width = int(value[2:])
            except ValueError:
                raise ConfigError(f"budget {text!r}: write a width as ffn:d=768") from None
            if width < 1:
                raise ConfigError(f"budget {text!r}: the width must be positive")
            return cls(kind, width=width, text=t)
        if value.endswith("%"):
            try:
                share = float(value[:-1]) / 100
            except ValueError:
                raise ConfigError(f"budget {text!r}: write a share as e.g. ffn:50%") from None
            if kind == "total" or not (math.isfinite(share) and share > 0):
                raise ConfigError(f"budget {text!r}: a share needs ffn: or nonembed: and a positive percentage")
            return cls(kind, share=share, text=t)
        return cls(kind, count=parse_budget(value), text=t)

    def ratio(self, base_width: int) -> int | None:
        """The Y of the standard FFN that defines an ``ffn:N%`` / ``ffn:d=N`` budget at base width
        D (None for other budgets); a width that is no D/Y of the space is a ConfigError."""
        if self.kind != "ffn":
            return None
        if self.width is not None:
            d: float = self.width
        elif self.share is not None:
            d = self.share * base_width
        else:
            return None
        for y in RATIO_CHOICES:
            if abs(d - base_width // y) < 1:
                return y
        choices = ", ".join(f"ffn:{100 / y:.3g}% (d={base_width // y})" for y in RATIO_CHOICES)
        raise ConfigError(f"budget {self.text or 'ffn'} means the standard FFN at d = {d:g}, not a width of the "
                          f"space (D = {base_width}): {choices}, or give a count (ffn:2.3M)")

    def measure(self, p: Price) -> int:
        return {"total": p.params, "ffn": p.ffn_params, "nonembed": p.nonembed_params}[self.kind]


def standards(layers: int) -> list[ModelSpec]:
    """The standard FFN at each width of the space, widest (Y = 1) first, in every layer."""
    return [ModelSpec((standard_ffn(1, y),)).broadcast(layers) for y in RATIO_CHOICES]


def matched_standard(spec: ModelSpec, price: Callable[[ModelSpec], Price], layers: int) -> ModelSpec:
    """The baseline of a spec compared on its own: the widest standard FFN with at most its FFN
    parameters (the smallest standard FFN when every one has more -- the comparison then says so
    by printing both counts)."""
    ffn = price(spec).ffn_params
    options = standards(layers)
    return next((s for s in options if price(s).ffn_params <= ffn), options[-1])


def resolve(budget: Budget | None, flops: float | None, price: Callable[[ModelSpec], Price], layers: int,
            base_width: int, teacher: Callable[[], Price]) -> tuple[float | None, ModelSpec]:
    """(the most parameters of the budget's kind a candidate may have, or None; the run's
    baseline: the widest standard FFN within the budget and ``flops``).  ConfigError naming the
    smallest standard FFN when none fits."""
    options = standards(layers)
    limit: float | None = None
    if budget is not None:
        y = budget.ratio(base_width)
        if budget.standard:
            limit = float(price(options[0]).params)
        elif y is not None:
            limit = float(budget.measure(price(options[y - 1])))
        elif budget.count is not None:
            limit = budget.count
        else:
            assert budget.share is not None  # Budget.parse gives standard, a width, a count or a share
            limit = budget.share * budget.measure(teacher())
    for spec in options:
        p = price(spec)
        if (budget is None or limit is None or budget.measure(p) <= limit) and (flops is None or p.flops <= flops):
            return limit, spec
    small = price(options[-1])
    what = [f"{budget.measure(small) / 1e6:.3f}M {budget.kind} parameters > {limit / 1e6:.3f}M"] \
        if budget is not None and limit is not None and budget.measure(small) > limit else []
    what += [f"{small.flops / 1e6:.1f}M FLOPs/token > {flops / 1e6:.1f}M"] if flops is not None and small.flops > flops else []
    raise ConfigError(f"no standard FFN fits the budget ({budget.text if budget else ''}"
                      f"{' --budget-flops' if flops is not None else ''}): the smallest, "
                      f"{options[-1].layers[0]} (d = {base_width // RATIO_CHOICES[-1]}), has {' and '.join(what)}; "
                      f"raise the budget so that the width-matched baseline can be trained")


def price_spec(spec: ModelSpec, ecfg: EvalConfig, tc: dict[str, Any], num_labels: int) -> Price:
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
