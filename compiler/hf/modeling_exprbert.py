"""ExprBert: a BERT whose layers each have their own feed-forward network and attention.

The model is BERT's -- embeddings, post-LayerNorm layers, pooler, classifier -- except per layer
(``configuration_exprbert.py`` lists each):

* the FFN (``ExprBertFFN``) stacks ``blocks`` blocks, each ``LayerNorm(h + dropout(block(h)))``;
  ``block`` computes the layer's expression.  In a model directory the blocks are written out in
  ``ffn_exprbert.py``; exprsearch passes its compiled ones instead (``ffn=``).
* the attention is BERT's multi-head self-attention with the heads left after pruning, or Long-Short
  Range Attention (``lsra_exprbert.py``, Lite Transformer) in its place.
* optional exit classifiers after some layers, with an exit rule (``exits_exprbert.py``); at
  inference, with ``config.early_exit``, each example leaves at its own layer.

exprsearch builds its students from this file and copies it verbatim into every model directory
it ships; it imports only torch, transformers and its neighbours.

>>> import torch
>>> config = ExprBertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
...     ffn_layers=[{"expression": "linear1_1(gelu(linear1_1(x,wb1)),wb2)", "blocks": 1,
...                  "linears": {"wb1": [16, 16], "wb2": [16, 16]}}])
>>> class StandardFFN(ExprBertFFN):
...     def block(self, b, x):
...         return b.wb2(F.gelu(b.wb1(x)))
>>> model = ExprBertForSequenceClassification(config, ffn=lambda i: StandardFFN(config, i)).eval()
>>> model(input_ids=torch.tensor([[1, 5, 7, 2]])).logits.shape
torch.Size([1, 2])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.models.bert.modeling_bert import BertAttention, BertEmbeddings, BertPooler

from .configuration_exprbert import ExprBertConfig
from .exits_exprbert import ExitHead, SkipGate, early_exits, exit_policy
from .lsra_exprbert import LSRASelfAttention

__all__ = ["ExprBertFFNBlock", "ExprBertFFN", "keep_heads", "attention_mask_for",
           "ExprBertLayer", "ExprBertEncoder", "ExprBertPreTrainedModel", "ExprBertModel",
           "ExprBertForSequenceClassification", "ExprBertEarlyExitOutput"]

FFNFactory = Callable[[int], nn.Module]  # layer index -> that layer's FFN, (..., H) -> (..., H)


class ExprBertFFNBlock(nn.Module):
    """The parameters of one stacked block: its linears by name, and a LayerNorm."""

    def __init__(self, linears: dict[str, list[int]], hidden: int, eps: float) -> None:
        super().__init__()
        for name, (in_features, out_features) in linears.items():
            self.add_module(name, nn.Linear(in_features, out_features))
        self.ln = nn.LayerNorm(hidden, eps=eps)


class ExprBertFFN(nn.Module):
    """Layer ``layer_idx``'s feed-forward network: its blocks in turn, each followed by dropout, the
    residual and LayerNorm (post-LN, as BERT's FFN).  Subclasses define ``block(b, x)``."""

    def __init__(self, config: ExprBertConfig, layer_idx: int) -> None:
        super().__init__()
        shape = config.ffn_layers[layer_idx]
        self.blocks = nn.ModuleList(ExprBertFFNBlock(shape["linears"], config.hidden_size, config.layer_norm_eps)
                                    for _ in range(shape["blocks"]))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def block(self, b: ExprBertFFNBlock, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("an FFN class defines block(b, x): one block of its expression")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in cast(Iterable[ExprBertFFNBlock], self.blocks):
            x = b.ln(x + self.dropout(self.block(b, x)))
        return x


def generated_ffns(config: ExprBertConfig) -> FFNFactory:
    """The FFN classes written for this model (``ffn_exprbert.py``), as a factory."""
    from .ffn_exprbert import LAYER_FFNS
    if len(LAYER_FFNS) != config.num_hidden_layers:
        raise ValueError(f"ffn_exprbert.py defines FFNs for {len(LAYER_FFNS)} layers, the config has "
                         f"{config.num_hidden_layers}: load the model from its own directory "
                         "(from_pretrained(path, trust_remote_code=True)), or pass ffn=")
    return lambda i: LAYER_FFNS[i](config, i)


@torch.no_grad()
def keep_heads(attention: BertAttention, keep: list[int]) -> None:
    """Keep only heads ``keep`` (indices among its current heads) of a multi-head attention, with
    their weights: the rows of query, key and value and the columns of the output projection."""
    s, out = attention.self, attention.output.dense
    size = s.attention_head_size
    idx = torch.tensor([h * size + j for h in keep for j in range(size)], device=s.query.weight.device)
    for name in ("query", "key", "value"):
        old = getattr(s, name)
        new = nn.Linear(old.in_features, len(idx), device=old.weight.device, dtype=old.weight.dtype)
        new.weight.copy_(old.weight[idx])
        new.bias.copy_(old.bias[idx])
        setattr(s, name, new)
    dense = nn.Linear(len(idx), out.out_features, device=out.weight.device, dtype=out.weight.dtype)
    dense.weight.copy_(out.weight[:, idx])
    dense.bias.copy_(out.bias)
    attention.output.dense = dense
    s.num_attention_heads, s.all_head_size = len(keep), len(idx)


def attention_mask_for(mask: torch.Tensor | None, hidden: torch.Tensor, config: ExprBertConfig) -> torch.Tensor | None:
    """A padding mask -- None, (B, L) 0/1, or ready (B, 1, 1, L) boolean or additive -- in the
    form the attention implementation takes: boolean (True: attend) for SDPA and LSRA, additive
    (0 or the dtype's minimum) for eager attention."""
    if mask is None:
        return None
    if mask.dim() == 2:
        mask = mask[:, None, None, :].bool()
    if config._attn_implementation == "eager" and mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=hidden.dtype, device=hidden.device).masked_fill(
            ~mask, torch.finfo(hidden.dtype).min)
    return mask


class ExprBertLayer(nn.Module):
    """Self-attention (``attention``: BERT's, or LSRA in its ``self``), then the layer's FFN."""

    def __init__(self, config: ExprBertConfig, layer_idx: int, ffn: nn.Module) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        kind = config.attention_layers[layer_idx]
        if kind["type"] == "lsra":
            self.attention.self = LSRASelfAttention(  # type: ignore[assignment]  # in BertSelfAttention's place
                config.hidden_size, kind["heads"], kind["kernel"], config.attention_probs_dropout_prob)
        elif kind["type"] != "mha":
            raise ValueError(f"layer {layer_idx}: unknown attention type {kind['type']!r} (mha or lsra)")
        elif config.heads(layer_idx) < config.num_attention_heads:
            keep_heads(self.attention, list(range(config.heads(layer_idx))))  # the weights are loaded after
        self.ffn = ffn

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the layer's output, the attention probabilities where the implementation gives them)."""
        out = self.attention(hidden_states, attention_mask)
        return self.ffn(out[0]), (out[1] if len(out) > 1 else None)


class ExprBertEncoder(nn.Module):
    def __init__(self, config: ExprBertConfig, ffn: FFNFactory) -> None:
        super().__init__()
        self.layer = nn.ModuleList(ExprBertLayer(config, i, ffn(i)) for i in range(config.num_hidden_layers))

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor | None, ...]]:
        """(the last hidden state, every hidden state from the embeddings' on, every layer's attention
        probabilities)."""
        states: tuple[torch.Tensor, ...] = (hidden_states,)
        attentions: tuple[torch.Tensor | None, ...] = ()
        for layer in self.layer:
            hidden_states, probs = layer(hidden_states, attention_mask)[:2]
            states += (hidden_states,)
            attentions += (probs,)
        return hidden_states, states, attentions


class ExprBertPreTrainedModel(PreTrainedModel):
    config: ExprBertConfig
    config_class = ExprBertConfig
    base_model_prefix = "bert"
    _supports_sdpa = True
    _no_split_modules = ["BertEmbeddings", "ExprBertLayer"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation: normal(0, initializer_range) weights, zero biases, unit
        LayerNorms; a skipping gate starts near 'run' (p(skip) = 0.12)."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, BertEmbeddings):  # its index buffers (not saved)
            module.position_ids.copy_(torch.arange(module.position_ids.shape[-1]).expand((1, -1)))
            module.token_type_ids.zero_()
        elif isinstance(module, SkipGate):
            nn.init.zeros_(module.lin.weight)
            nn.init.constant_(module.lin.bias, -2.0)


class ExprBertModel(ExprBertPreTrainedModel):
    """The encoder: embeddings, the layers, the pooler.  ``ffn``: layer index -> that layer's FFN
    (default: the classes of ``ffn_exprbert.py``)."""

    def __init__(self, config: ExprBertConfig, add_pooling_layer: bool = True, ffn: FFNFactory | None = None) -> None:
        super().__init__(config)
        n = config.num_hidden_layers
        if len(config.ffn_layers) != n or len(config.attention_layers) != n:
            raise ValueError(f"the config describes {len(config.ffn_layers)} FFNs and {len(config.attention_layers)} "
                             f"attention layers for {n} layers")
        self.embeddings = BertEmbeddings(config)
        self.encoder = ExprBertEncoder(config, ffn or generated_ffns(config))
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embeddings.word_embeddings = value  # type: ignore[assignment]  # an Embedding, as BERT's

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None
                ) -> BaseModelOutputWithPooling | tuple:
        c = self.config
        hidden = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids,
                                 inputs_embeds=inputs_embeds)
        last, states, attentions = self.encoder(hidden, attention_mask_for(attention_mask, hidden, c))
        out = BaseModelOutputWithPooling(
            last_hidden_state=last, pooler_output=self.pooler(last) if self.pooler is not None else None,
            hidden_states=states if (c.output_hidden_states if output_hidden_states is None else output_hidden_states)
            else None,
            attentions=attentions if (c.output_attentions if output_attentions is None else output_attentions) else None)
        return out if (c.return_dict if return_dict is None else return_dict) else out.to_tuple()


@dataclass
class ExprBertEarlyExitOutput(SequenceClassifierOutput):
    """Early-exit inference: each example's logits from the layer it left at, and how many layers
    it ran (``layers_run``)."""

    layers_run: torch.Tensor | None = None


class ExprBertForSequenceClassification(ExprBertPreTrainedModel):
    """ExprBertModel, a classifier on the pooled [CLS] vector, and the exit classifiers (and
    skipping gates) the config lists.  ``model(**inputs)`` returns the last layer's logits; with
    ``config.early_exit`` at inference, each example's logits from the layer it left at."""

    def __init__(self, config: ExprBertConfig, ffn: FFNFactory | None = None) -> None:
        super().__init__(config)
        if config.num_labels is None:
            raise ValueError("ExprBertForSequenceClassification needs config.num_labels")
        self.num_labels: int = config.num_labels
        self.bert = ExprBertModel(config, ffn=ffn)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)
        self.exits: nn.ModuleDict | None = None
        self.gates: nn.ModuleList | None = None
        if config.exit_layers is not None:
            self.exits = nn.ModuleDict({str(i): ExitHead(config.hidden_size, self.num_labels, p)
                                        for i in config.exit_layers})
            if config.exit_policy == "gate":  # gate i decides whether layer i + 1 runs
                self.gates = nn.ModuleList(SkipGate(config.hidden_size) for _ in range(config.num_hidden_layers - 1))
        self.post_init()

    def exit_logits(self, layer: int, hidden: torch.Tensor) -> torch.Tensor | None:
        """The logits of the exit after layer ``layer`` (None: it has none; the last layer's exit
        is the model's own pooler and classifier)."""
        if layer == self.config.num_hidden_layers - 1:
            if self.bert.pooler is None:
                raise ValueError("the last layer's exit is the pooler and classifier: the model has no pooler")
            return self.classifier(self.dropout(self.bert.pooler(hidden)))
        head = self.exits[str(layer)] if self.exits is not None and str(layer) in self.exits else None
        return None if head is None else head(hidden)

    def loss_of(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The task loss (by ``config.problem_type``, as BERT's)."""
        c = self.config
        if c.problem_type is None:
            c.problem_type = ("regression" if self.num_labels == 1 else "single_label_classification"
                              if labels.dtype in (torch.long, torch.int) else "multi_label_classification")
        if c.problem_type == "regression":
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        if c.problem_type == "single_label_classification":
            return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_attentions: bool | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None) -> SequenceClassifierOutput | tuple:
        if self.config.early_exit and not self.training:
            logits, layers_run = self._early_exit(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds)
            out: SequenceClassifierOutput = ExprBertEarlyExitOutput(
                loss=None if labels is None else self.loss_of(logits, labels), logits=logits, layers_run=layers_run)
        else:
            base = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             position_ids=position_ids, inputs_embeds=inputs_embeds,
                             output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                             return_dict=True)
            logits = self.classifier(self.dropout(base.pooler_output))
            out = SequenceClassifierOutput(loss=None if labels is None else self.loss_of(logits, labels), logits=logits,
                                           hidden_states=base.hidden_states, attentions=base.attentions)
        return out if (self.config.return_dict if return_dict is None else return_dict) else out.to_tuple()

    def _early_exit(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                    token_type_ids: torch.Tensor | None, position_ids: torch.Tensor | None,
                    inputs_embeds: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.exits is None:
            raise ValueError("config.early_exit needs exit classifiers (config.exit_layers)")
        hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids,
                                      inputs_embeds=inputs_embeds)
        return early_exits(hidden, attention_mask_for(attention_mask, hidden, self.config), self.bert.encoder.layer,
                           self.exit_logits, exit_policy(self.config), self.gates)


ExprBertConfig.register_for_auto_class()
ExprBertModel.register_for_auto_class("AutoModel")
ExprBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
