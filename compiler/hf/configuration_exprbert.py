"""ExprBert configuration: a BERT encoder whose every layer says what it is.

An ExprBert is BERT-shaped (embeddings, post-LayerNorm layers, pooler, classifier) but each layer
has its own feed-forward network -- an expression found by exprsearch, with its own linears and
number of stacked blocks -- and its own attention: multi-head (some heads possibly pruned) or
Long-Short Range Attention.  The config lists all of it per layer, so it describes the model
without its code; exit heads, their rule and whether inference uses them are fields too.

This file is part of every model directory exprsearch ships (copied verbatim from the package:
it imports only transformers).

>>> config = ExprBertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_layers=[
...     {"expression": "linear1_1(gelu(linear1_1(x,wb1)),wb2)", "blocks": 1, "linears": {"wb1": [32, 32], "wb2": [32, 32]}},
...     {"expression": "linear2_2(relu(linear2_2(x,wb1)),wb2)", "blocks": 2, "linears": {"wb1": [32, 16], "wb2": [16, 32]}}],
...     attention_layers=[{"type": "mha"}, {"type": "lsra", "heads": 1, "kernel": 3}], pruned_heads={"0": [1]})
>>> config.ffn_layers[1]["blocks"], config.attention_layers[1]["type"], config.pruned_heads
(2, 'lsra', {0: [1]})
"""
from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

__all__ = ["ExprBertConfig"]


class ExprBertConfig(PretrainedConfig):
    r"""Configuration of an ExprBert model (``modeling_exprbert.py``).

    Per layer i (lists with one entry per layer):

    * ``ffn_layers[i]``: the layer's feed-forward network -- ``expression`` (exprsearch's language;
      its forward is written out in ``ffn_exprbert.py``), ``blocks`` (how many blocks are stacked,
      each ``LayerNorm(h + dropout(block(h)))``) and ``linears`` (each linear's name -- ``wb1``,
      ``wb2``, a gate's ``wb3`` -- and its ``[in_features, out_features]``).
    * ``attention_layers[i]``: ``{"type": "mha"}`` (BERT's multi-head self-attention) or
      ``{"type": "lsra", "heads": h, "kernel": k}`` (Long-Short Range Attention: half the channels
      through h-head attention, half through a GLU and a depthwise convolution of width k).
    * ``pruned_heads``: ``{layer: [heads]}``, the heads removed from a multi-head layer (indices
      among its ``num_attention_heads`` original heads; transformers' own field).

    Early exit (present when ``exit_layers`` is set):

    * ``exit_layers``: the layers with an exit classifier (the last layer's is the model's own).
    * ``exit_policy``: ``"entropy"`` (leave at the first exit whose normalised entropy is below
      ``exit_threshold``), ``"patience"`` (leave once ``exit_patience`` consecutive exits agree;
      regression: within ``exit_tolerance``) or ``"gate"`` (skipping gates skip layers; with
      ``exit_threshold`` > 0 also the entropy rule).
    * ``early_exit``: False (default) -- ``model(**inputs)`` runs every layer and returns the last
      layer's logits; True -- at inference each example leaves at its own layer by the policy
      (``from_pretrained(path, trust_remote_code=True, early_exit=True)``).

    The remaining fields are BERT's.
    """

    model_type = "exprbert"
    is_decoder = False  # an encoder (read by transformers' BertAttention; not saved)

    def __init__(
        self,
        vocab_size: int = 30522,                 # token vocabulary
        hidden_size: int = 384,                  # H, the model width
        num_hidden_layers: int = 6,              # transformer layers
        num_attention_heads: int = 12,           # heads of a multi-head layer before pruning
        ffn_layers: list[dict[str, Any]] | None = None,        # per layer: expression, blocks, linears
        ffn_base_width: int | None = None,       # D, the width linearX_Y is relative to (d = D // Y; None: H)
        attention_layers: list[dict[str, Any]] | None = None,  # per layer: mha | lsra with heads, kernel
        pruned_heads: dict[int, list[int]] | None = None,      # heads removed from multi-head layers
        exit_layers: list[int] | None = None,    # layers with an exit classifier (None: none)
        exit_policy: str = "entropy",            # entropy | patience | gate
        exit_threshold: float = 0.0,             # entropy (and gate): leave below this normalised entropy
        exit_patience: int = 0,                  # patience: consecutive agreeing exits to leave
        exit_tolerance: float = 0.1,             # patience on regression: predictions this close agree
        early_exit: bool = False,                # inference leaves early by the policy (needs exit_layers)
        hidden_dropout_prob: float = 0.1,        # dropout of embeddings, attention output, FFN blocks
        attention_probs_dropout_prob: float = 0.1,  # dropout of attention probabilities
        max_position_embeddings: int = 512,      # longest sequence
        type_vocab_size: int = 2,                # token types (1: the tokenizer has no segments)
        initializer_range: float = 0.02,         # std of the normal initialisation
        layer_norm_eps: float = 1e-12,           # LayerNorm epsilon
        pad_token_id: int = 0,                   # padding token
        classifier_dropout: float | None = None,  # dropout before the classifier (None: hidden's)
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.ffn_layers = list(ffn_layers or [])
        self.ffn_base_width = ffn_base_width
        self.attention_layers = list(attention_layers or [{"type": "mha"} for _ in range(num_hidden_layers)])
        self.pruned_heads = {int(layer): list(heads) for layer, heads in (pruned_heads or {}).items()}
        self.exit_layers = None if exit_layers is None else [int(i) for i in exit_layers]
        self.exit_policy = exit_policy
        self.exit_threshold = exit_threshold
        self.exit_patience = exit_patience
        self.exit_tolerance = exit_tolerance
        self.early_exit = early_exit
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.classifier_dropout = classifier_dropout
        kwargs["pad_token_id"] = pad_token_id  # (transformers 5 types the base __init__ without it)
        super().__init__(**kwargs)

    def heads(self, layer: int) -> int:
        """Heads of layer ``layer``'s attention (multi-head: those left after pruning)."""
        attention = self.attention_layers[layer]
        if attention["type"] == "lsra":
            return attention["heads"]
        return self.num_attention_heads - len(self.pruned_heads.get(layer, ()))
