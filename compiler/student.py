"""model spec --> BERT student: the shipped model's own class, with compiled FFNs.

Input: a ``ModelSpec`` (one expression per layer, or one for all; attention parts) and a
``StudentConfig``; optionally a teacher (an encoder of the BERT family: ``teachers.py``) to
initialise from.  Output: an ``ExprBertForSequenceClassification`` -- the class of
``compiler/hf/modeling_exprbert.py``, the very file a shipped directory holds -- whose config lists
every layer (its FFN's expression, blocks and linears; its attention; pruned heads) and whose
layer-i FFN is expression i lowered to torch.fx (``lower``, each layer once), with the parameter
layout of the shipped FFN classes (``blocks[b].<slot>``, ``blocks[b].ln``).  Invariants: the
model holds its parsed ``spec``; the config describes the same model, so ``save_pretrained`` and
``load_student`` (the edge that parses a saved config's expressions) round-trip it.

>>> import exprsearch as es, torch
>>> spec = es.parse_spec("[linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2); tanh(linear2_2(gelu(linear2_2(x,wb1)),wb2))]")
>>> m = build_student(spec, StudentConfig(layers=2, hidden=32, heads=2, vocab_size=100)).eval()
>>> m(input_ids=torch.tensor([[1, 5, 7, 2]])).logits.shape
torch.Size([1, 2])
>>> m.config.ffn_layers[1]["blocks"], m.config.ffn_layers[1]["linears"]
(2, {'wb1': [32, 16], 'wb2': [16, 32]})
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from transformers import PreTrainedModel

from exprsearch.errors import ConfigError
from exprsearch.lang.expr import AttnSpec, Expr, ModelSpec
from exprsearch.lang.parsing import parse_spec

from .hf.configuration_exprbert import ExprBertConfig
from .hf.modeling_exprbert import ExprBertForSequenceClassification
from .lower import FFNConfig, blocks_of, lower, slot_instances
from .supernet import load_teacher_ffn

__all__ = ["StudentConfig", "ExprBertConfig", "ExprBertForSequenceClassification", "build_student", "load_student",
           "student_config", "student_from_config", "shallower_config", "spec_of", "ffn_config", "ffn_shape",
           "ffn_modules", "layer_map", "init_from_teacher", "set_dropout", "attach_spec", "attached_spec"]


@dataclass(frozen=True)
class StudentConfig:
    """Shape of a BERT student."""

    layers: int = 6                  # transformer layers
    hidden: int = 384                # H
    heads: int = 12                  # attention heads
    base_width: int | None = None    # D, the base FFN width (None: D = H, as in EfficientBERT)
    num_labels: int = 2              # classifier outputs (1 = regression)
    dropout: float = 0.1             # hidden dropout (FFN blocks, attention output, embeddings)
    vocab_size: int = 30522          # token vocabulary (taken from the teacher when one is given)
    max_position: int = 512          # longest sequence
    type_vocab: int = 2              # token-type (segment) vocabulary (taken from the teacher)
    layer_map: str = "uniform"       # student layer -> teacher layer: uniform | first | e.g. 1,3,5


def ffn_shape(e: Expr, cfg: FFNConfig) -> dict[str, Any]:
    """What the config says of one layer's FFN: its expression, blocks, and linears' [in, out].

    >>> import exprsearch as es
    >>> ffn_shape(es.parse("linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)"), FFNConfig(hidden=12))
    {'expression': 'linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)', 'blocks': 1, 'linears': {'wb1': [12, 4], 'wb3': [12, 4], 'wb2': [4, 12]}}
    """
    return {"expression": str(e), "blocks": blocks_of(e),
            "linears": {name: [n_in, n_out] for name, n_out, n_in in slot_instances(e, cfg).values()}}


def _attention(a: AttnSpec | None, i: int, cfg: StudentConfig) -> tuple[dict[str, Any], list[int]]:
    """Layer i's attention entry and its pruned heads (``mha(heads=k)`` keeps the first k)."""
    from .attention import lsra_heads
    if a is not None and a.kind == "lsra":
        heads, kernel = lsra_heads(a, cfg.heads), a.kernel or 7
        half = cfg.hidden // 2
        if cfg.hidden % 2 or half % heads or kernel % 2 == 0:
            raise ConfigError(f"layer {i}: lsra(heads={heads}, kernel={kernel}) needs an even hidden size "
                              f"({cfg.hidden}) whose half is a multiple of the heads, and an odd kernel")
        return {"type": "lsra", "heads": heads, "kernel": kernel}, []
    if a is not None and a.heads is not None and a.heads > cfg.heads:
        raise ConfigError(f"mha(heads={a.heads}): the model has {cfg.heads} heads per layer")
    kept = cfg.heads if a is None or a.heads is None else a.heads
    return {"type": "mha"}, list(range(kept, cfg.heads))


def student_config(spec: ModelSpec, cfg: StudentConfig) -> ExprBertConfig:
    """The config of ``spec``'s student (``spec`` already one item per layer)."""
    if cfg.hidden % cfg.heads:
        raise ConfigError(f"hidden size {cfg.hidden} is not a multiple of heads {cfg.heads}")
    fcfg = FFNConfig(hidden=cfg.hidden, base_width=cfg.base_width, dropout=cfg.dropout)
    attention, pruned = [], {}
    for i, a in enumerate(spec.attn or (None,) * len(spec)):
        entry, heads = _attention(a, i, cfg)
        attention.append(entry)
        if heads:
            pruned[i] = heads
    return ExprBertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
        ffn_layers=[ffn_shape(e, fcfg) for e in spec.layers], ffn_base_width=cfg.base_width,
        attention_layers=attention, pruned_heads=pruned,
        hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout, max_position_embeddings=cfg.max_position,
        type_vocab_size=cfg.type_vocab, num_labels=max(1, cfg.num_labels),
        problem_type="regression" if cfg.num_labels == 1 else "single_label_classification")


def ffn_config(config: ExprBertConfig) -> FFNConfig:
    """The shapes the FFNs of ``config``'s model are lowered with."""
    return FFNConfig(hidden=config.hidden_size, base_width=config.ffn_base_width, dropout=config.hidden_dropout_prob,
                     ln_eps=config.layer_norm_eps)


def spec_of(config: ExprBertConfig) -> ModelSpec:
    """The spec a saved config describes: its expressions parsed (a saved model is an edge)."""
    text = "[" + "; ".join(f["expression"] for f in config.ffn_layers) + "]"
    attn: list[AttnSpec | None] = []
    for i, a in enumerate(config.attention_layers):
        if a["type"] == "lsra":
            attn.append(AttnSpec("lsra", heads=a["heads"], kernel=a["kernel"]))
        else:
            attn.append(AttnSpec("mha", heads=config.heads(i)) if config.heads(i) < config.num_attention_heads else None)
    return ModelSpec(parse_spec(text, strict=False).layers, tuple(attn))


def attach_spec(model: nn.Module, spec: ModelSpec) -> None:
    """Keep ``spec`` on the student as ``model.spec``: the library's record of the parsed spec the
    model was built from (the shipped class itself knows nothing of it)."""
    setattr(model, "spec", spec)


def attached_spec(model: nn.Module) -> ModelSpec:
    """The parsed spec ``model`` was built from (``attach_spec``)."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise ConfigError(f"this {type(model).__name__} holds no parsed spec: build it with build_student or "
                          f"load_student")
    return spec


def student_from_config(config: ExprBertConfig, spec: ModelSpec) -> ExprBertForSequenceClassification:
    """The student ``config`` describes, layer i's FFN ``spec``'s expression i lowered (freshly
    initialised, like every other weight)."""
    fcfg = ffn_config(config)
    model = ExprBertForSequenceClassification(config, ffn=lambda i: lower(spec.layers[i], fcfg))
    attach_spec(model, spec)
    return model


def shallower_config(config: ExprBertConfig, keep: list[int]) -> ExprBertConfig:
    """``config`` of a model made of layers ``keep`` only (LayerDrop extraction; no exit heads)."""
    return ExprBertConfig(**{**config.to_dict(), "num_hidden_layers": len(keep), "exit_layers": None,
                             "ffn_layers": [config.ffn_layers[k] for k in keep],
                             "attention_layers": [config.attention_layers[k] for k in keep],
                             "pruned_heads": {j: config.pruned_heads[k] for j, k in enumerate(keep)
                                              if k in config.pruned_heads}})


def ffn_modules(model: nn.Module) -> Iterator[nn.Module]:
    """The FFN of each layer, bottom to top."""
    from .heads import encoder_layers
    for layer in encoder_layers(model):
        yield layer.ffn


def layer_map(rule: str, student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer for each student layer.  ``uniform``: the last of each group of
    teacher_layers / student_layers (6 -> 3 gives 1, 3, 5); ``first``: 0, 1, 2, ...;
    or an explicit comma list.

    >>> layer_map("uniform", 3, 6), layer_map("first", 2, 6), layer_map("0,0", 2, 6)
    ([1, 3, 5], [0, 1], [0, 0])
    """
    if rule == "uniform":
        out = [max(0, round((i + 1) * teacher_layers / student_layers) - 1) for i in range(student_layers)]
    elif rule == "first":
        out = list(range(student_layers))
    else:
        try:
            out = [int(v) for v in rule.split(",")]
        except ValueError:
            raise ConfigError(f"layer map {rule!r}: use uniform, first or a comma list of layers") from None
    if len(out) != student_layers or not all(0 <= t < teacher_layers for t in out):
        raise ConfigError(f"layer map {out} must name {student_layers} teacher layers in 0..{teacher_layers - 1}")
    return out


@torch.no_grad()
def _copy(dst: nn.Module, src: nn.Module, sliced: bool = False, layers: list[int] | None = None,
          skip: str | None = None) -> int:
    """Copy same-named tensors of ``src`` into ``dst``: same shape, or with ``sliced`` the leading
    block of a larger tensor (pruned heads keep the first heads); ``layers[i]``: the ``src`` layer
    that ``dst``'s encoder layer i comes from (a shallower copy); names holding ``skip`` are left
    alone.  Returns how many tensors were copied."""
    theirs = src.state_dict()
    n = 0
    for name, t in dst.state_dict().items():
        if skip is not None and skip in name:
            continue
        src_name = name
        if layers is not None and ".encoder.layer." in name:
            head, rest = name.split(".encoder.layer.", 1)
            j, tail = rest.split(".", 1)
            src_name = f"{head}.encoder.layer.{layers[int(j)]}.{tail}"
        if src_name not in theirs:
            continue
        src_t = theirs[src_name]
        if src_t.shape == t.shape:
            t.copy_(src_t)
            n += 1
        elif sliced and src_t.dim() == t.dim() and all(a >= b for a, b in zip(src_t.shape, t.shape)):
            t.copy_(src_t[tuple(slice(0, d) for d in t.shape)])
            n += 1
    return n


def init_from_teacher(student: ExprBertForSequenceClassification, teacher: PreTrainedModel,
                      rule: str = "uniform") -> dict[str, int]:
    """Warm-start a student from a teacher of the BERT family (through its BERT twin,
    ``teachers.bert_twin``) where shapes allow: embeddings, each student layer's attention and FFN
    from its mapped teacher layer, pooler and (same label count) classifier.  Returns the number
    of tensors copied per part."""
    from .heads import encoder_layers
    from .teachers import bert_twin
    twin: Any = bert_twin(teacher)  # a BERT: its parts known by BERT's attribute names
    t_bert = getattr(twin, "bert", twin)
    s_bert = student.bert
    mapping = layer_map(rule, len(s_bert.encoder.layer), len(t_bert.encoder.layer))
    counts = {"embeddings": _copy(s_bert.embeddings, t_bert.embeddings), "attention": 0, "ffn": 0}
    for s_layer, t in zip(encoder_layers(student), mapping):
        t_layer = t_bert.encoder.layer[t]
        counts["attention"] += _copy(s_layer.attention, t_layer.attention, sliced=True)
        counts["ffn"] += load_teacher_ffn(s_layer.ffn, t_layer.intermediate, t_layer.output)
    if s_bert.pooler is not None and getattr(t_bert, "pooler", None) is not None:
        counts["pooler"] = _copy(s_bert.pooler, t_bert.pooler)
    if hasattr(twin, "classifier"):
        counts["classifier"] = _copy(student.classifier, twin.classifier)
    return counts


def build_student(spec: ModelSpec | str, cfg: StudentConfig, teacher: PreTrainedModel | None = None
                  ) -> ExprBertForSequenceClassification:
    """A BERT student whose layer i FFN is ``spec[i]`` (a one-layer spec applies to every layer),
    initialised from ``teacher`` where shapes allow.  A text spec is a library user's input and is
    parsed here; the library passes parsed specs."""
    if isinstance(spec, str):
        spec = parse_spec(spec, strict=False)
    if teacher is not None:
        from .teachers import teacher_shape
        tc = teacher_shape(teacher.config.to_dict())
        cfg = replace(cfg, vocab_size=tc["vocab_size"], type_vocab=tc["type_vocab_size"],
                      max_position=tc["max_position_embeddings"])
    spec = spec.broadcast(cfg.layers)
    model = student_from_config(student_config(spec, cfg), spec)
    if teacher is not None:
        init_from_teacher(model, teacher, cfg.layer_map)
    return model


def load_student(path: str | Path, **kwargs: Any) -> ExprBertForSequenceClassification:
    """A student saved with ``save_pretrained`` (a shipped directory too) as the library uses it:
    its FFNs lowered from the config's expressions, the weights loaded into them."""
    config = ExprBertConfig.from_pretrained(path, **kwargs)
    spec = spec_of(config)
    fcfg = ffn_config(config)
    model = ExprBertForSequenceClassification.from_pretrained(path, config=config,
                                                              ffn=lambda i: lower(spec.layers[i], fcfg))
    attach_spec(model, spec)
    return model


def set_dropout(model: torch.nn.Module, p: float) -> None:
    """Every dropout of ``model`` (hidden, attention, FFN blocks) to probability ``p``."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if hasattr(model, "config") and hasattr(model.config, key):
            setattr(model.config, key, p)
