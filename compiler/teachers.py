"""a BERT-family teacher --> its BERT twin: the same weights under BERT's names and layout.

Input: a Hugging Face encoder for sequence classification of a supported family -- BERT,
RoBERTa (and XLM-RoBERTa, CamemBERT: the same layers), ELECTRA (embedding size = hidden size) or
DistilBERT -- or its ``config.json`` as a dict.  Output: ``bert_twin(teacher)``, a
``BertForSequenceClassification`` holding the teacher's embeddings, every layer's attention and
FFN and its classification head under BERT's module names (the student builder, the supernet and
the FFN loader read only that layout), and ``teacher_shape(config)``: the shape facts under BERT's
key names.  Invariants: the twin computes what the teacher computes on the rows it was trained on
(RoBERTa's positions are re-based to start at 0: its table is offset by ``padding_idx + 1``; a
teacher without token types gets a one-row, zero-input type table); what cannot be carried into a
BERT layer -- DeBERTa's disentangled attention, ELECTRA's embedding projection -- is a ConfigError
naming the families that are supported.

>>> teacher_shape({"model_type": "distilbert", "dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64,
...                "vocab_size": 100, "max_position_embeddings": 512})["intermediate_size"]
64
>>> teacher_shape({"model_type": "roberta", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
...                "intermediate_size": 64, "vocab_size": 100, "max_position_embeddings": 514, "pad_token_id": 1,
...                "type_vocab_size": 1})["max_position_embeddings"]
512
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from exprsearch.errors import ConfigError

from .execute import to_device

__all__ = ["FAMILIES", "family", "teacher_shape", "bert_twin", "has_token_types"]

# model_type -> the layout its weights map from
FAMILIES = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta",
            "camembert": "roberta", "electra": "electra", "distilbert": "distilbert"}
_REFUSED = {"deberta": "its disentangled relative-position attention has no BERT layer to carry it into",
            "deberta-v2": "its disentangled relative-position attention has no BERT layer to carry it into"}


def family(config: dict[str, Any]) -> str:
    """The weight layout of a teacher's ``config.json`` (ConfigError for an unsupported one)."""
    kind = config.get("model_type")
    if kind in FAMILIES:
        if kind == "electra" and config.get("embedding_size", config.get("hidden_size")) != config.get("hidden_size"):
            raise ConfigError(f"an ELECTRA teacher whose embedding size ({config.get('embedding_size')}) differs from "
                              f"its hidden size ({config.get('hidden_size')}) projects its embeddings, which a BERT "
                              "student cannot carry; use a base or large ELECTRA (equal sizes)")
        return FAMILIES[kind]
    why = f": {_REFUSED[kind]}" if kind in _REFUSED else ""
    raise ConfigError(f"teacher model_type {kind!r} is not supported{why}; exprsearch distils from encoders of the "
                      f"BERT family: {', '.join(sorted(FAMILIES))}")


def _offset(config: dict[str, Any]) -> int:
    """Rows of the position table before position 0 (RoBERTa: padding_idx + 1)."""
    return int(config.get("pad_token_id", 1)) + 1 if family(config) == "roberta" else 0


def teacher_shape(config: dict[str, Any]) -> dict[str, Any]:
    """A teacher's shape under BERT's key names: hidden_size, num_hidden_layers,
    num_attention_heads, intermediate_size, vocab_size, max_position_embeddings (usable positions),
    type_vocab_size (1 where the teacher has no token types), hidden_dropout_prob, layer_norm_eps."""
    fam = family(config)
    if fam == "distilbert":
        return {"hidden_size": config["dim"], "num_hidden_layers": config["n_layers"],
                "num_attention_heads": config["n_heads"], "intermediate_size": config["hidden_dim"],
                "vocab_size": config["vocab_size"], "max_position_embeddings": config.get("max_position_embeddings", 512),
                "type_vocab_size": 1, "hidden_dropout_prob": config.get("dropout", 0.1),
                "attention_probs_dropout_prob": config.get("attention_dropout", 0.1), "layer_norm_eps": 1e-12}
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
    out = {k: config[k] for k in keys}
    out.update(max_position_embeddings=config.get("max_position_embeddings", 512) - _offset(config),
               type_vocab_size=config.get("type_vocab_size", 2) or 1,
               hidden_dropout_prob=config.get("hidden_dropout_prob", 0.1),
               attention_probs_dropout_prob=config.get("attention_probs_dropout_prob", 0.1),
               layer_norm_eps=config.get("layer_norm_eps", 1e-12))
    return out


def has_token_types(model: nn.Module) -> bool:
    """Does ``model``'s forward take token types (DistilBERT's does not)?"""
    return getattr(getattr(model, "config", None), "type_vocab_size", None) is not None


def _base(model: nn.Module) -> Any:
    """The encoder of ``model`` (its ``base_model_prefix`` part): a family's own classes, known by their
    attribute names only."""
    prefix = getattr(model, "base_model_prefix", None)
    return getattr(model, prefix, model) if prefix is not None else model


def _bert_names(model: nn.Module, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The teacher's tensors under the names of a ``BertForSequenceClassification``."""
    fam, base = family(config), _base(model)
    sd: dict[str, torch.Tensor] = {}
    emb = base.embeddings
    sd["bert.embeddings.word_embeddings.weight"] = emb.word_embeddings.weight
    sd["bert.embeddings.position_embeddings.weight"] = emb.position_embeddings.weight[_offset(config):]
    types = getattr(emb, "token_type_embeddings", None)
    sd["bert.embeddings.token_type_embeddings.weight"] = (types.weight if types is not None else
                                                          torch.zeros(1, emb.word_embeddings.weight.shape[1]))
    sd["bert.embeddings.LayerNorm.weight"], sd["bert.embeddings.LayerNorm.bias"] = emb.LayerNorm.weight, emb.LayerNorm.bias
    layers = base.transformer.layer if fam == "distilbert" else base.encoder.layer
    for i, layer in enumerate(layers):
        p = f"bert.encoder.layer.{i}."
        if fam == "distilbert":
            a = layer.attention
            parts = {"attention.self.query": a.q_lin, "attention.self.key": a.k_lin, "attention.self.value": a.v_lin,
                     "attention.output.dense": a.out_lin, "attention.output.LayerNorm": layer.sa_layer_norm,
                     "intermediate.dense": layer.ffn.lin1, "output.dense": layer.ffn.lin2,
                     "output.LayerNorm": layer.output_layer_norm}
            for name, mod in parts.items():
                sd[p + name + ".weight"], sd[p + name + ".bias"] = mod.weight, mod.bias
        else:
            for name, t in layer.state_dict().items():
                sd[p + name] = t
    head = {"bert": ("bert.pooler.dense", "classifier"), "distilbert": ("pre_classifier", "classifier")}.get(
        fam, ("classifier.dense", "classifier.out_proj"))
    for src, dst in zip(head, ("bert.pooler.dense", "classifier")):
        part: Any = model.get_submodule(src) if _has(model, src) else None
        if part is not None:
            sd[dst + ".weight"], sd[dst + ".bias"] = part.weight, part.bias
    return sd


def _has(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False


@torch.no_grad()
def bert_twin(teacher: PreTrainedModel) -> PreTrainedModel:
    """``teacher`` itself when it is a BERT, else a ``BertForSequenceClassification`` with its
    weights (see the module docstring)."""
    from transformers import BertConfig, BertForSequenceClassification
    config = teacher.config.to_dict()
    if family(config) == "bert":
        return teacher
    shape = teacher_shape(config)
    fields = {**shape, "hidden_act": "gelu", "num_labels": teacher.config.num_labels,
              "pad_token_id": config.get("pad_token_id", 0)}
    twin = to_device(BertForSequenceClassification(BertConfig(**fields)), next(teacher.parameters()).device)
    mine = twin.state_dict()
    for name, t in _bert_names(teacher, config).items():
        if name in mine and mine[name].shape == t.shape:
            mine[name].copy_(t)
    return twin.eval()
