"""model spec --> BERT student: HF ``transformers`` BERT whose layer-i FFN is compiled expression i.

Input: a ``ModelSpec`` (one expression per layer, or one for all) and a ``StudentConfig``;
optionally a teacher (an encoder of the BERT family: ``teachers.py``) to initialise from.  Output: an
``ExprBertForSequenceClassification`` -- a ``BertForSequenceClassification`` whose layers'
``intermediate`` is the identity and whose ``output`` runs the lowered FFN (which owns its
residual and LayerNorm, exactly like BERT's own FFN).  Each layer's FFN is built once, by a factory
(``lower`` for a fresh student; ``SupernetStudent.extract`` passes ``inherit`` for a supernet
slice).  Invariants: the model holds its parsed ``spec``; the text form lives in the config
(``ffn_spec``), written for ``save_pretrained`` and parsed only by ``from_pretrained``, so the pair
round-trips the architecture and weights.

>>> import exprsearch as es, torch
>>> spec = es.parse_spec("[linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2); tanh(linear2_2(gelu(linear2_2(x,wb1)),wb2))]")
>>> m = build_student(spec, StudentConfig(layers=2, hidden=32, heads=2, vocab_size=100)).eval()
>>> m(input_ids=torch.tensor([[1, 5, 7, 2]])).logits.shape
torch.Size([1, 2])
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import fx, nn
from transformers import BertConfig, BertForSequenceClassification, PreTrainedModel

from exprsearch.errors import ConfigError
from exprsearch.lang.expr import Expr, ModelSpec
from exprsearch.lang.parsing import parse_spec

from .lower import FFNConfig, lower
from .supernet import load_teacher_ffn

__all__ = ["StudentConfig", "ExprBertConfig", "ExprBertForSequenceClassification", "ExprFFNOutput",
           "build_student", "ffn_modules", "layer_map", "init_from_teacher", "set_dropout", "SPEC_FILE", "FFNFactory"]

FFNFactory = Callable[[int, Expr, FFNConfig], fx.GraphModule]  # (layer index, expression, shape) -> FFN

SPEC_FILE = "model.ffn"  # the model spec saved next to the weights, one expression per line


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


class ExprBertConfig(BertConfig):
    """BertConfig plus ``ffn_spec`` (the per-layer expressions) and ``ffn_base_width`` (D)."""

    model_type = "exprbert"

    def __init__(self, ffn_spec: str = "", ffn_base_width: int | None = None, **kw) -> None:
        super().__init__(**kw)
        self.ffn_spec = ffn_spec
        self.ffn_base_width = ffn_base_width


class ExprFFNOutput(nn.Module):
    """Stands in for ``BertOutput``: BERT calls it as ``output(intermediate(h), h)``; the
    intermediate is the identity, so this just runs the lowered FFN on ``h``."""

    def __init__(self, ffn: fx.GraphModule) -> None:
        super().__init__()
        self.ffn = ffn

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.ffn(input_tensor)


class ExprBertForSequenceClassification(BertForSequenceClassification):
    config_class = ExprBertConfig

    def __init__(self, config: ExprBertConfig, spec: ModelSpec | None = None, ffn: FFNFactory | None = None) -> None:
        """``spec``: the parsed spec (None: ``from_pretrained``, which has only the saved config's
        text); ``ffn(i, e, cfg)`` builds layer i's FFN (default: ``lower(e, cfg)``).  A shipped
        directory's ``hidden_act`` names no activation (a plain BERT refuses it): BERT's own FFN
        modules are built with GELU, then replaced."""
        act, config.hidden_act = config.hidden_act, "gelu"
        super().__init__(config)
        config.hidden_act = act
        if spec is None:
            spec = parse_spec(config.ffn_spec, strict=False)
        self.spec = spec.broadcast(config.num_hidden_layers)
        cfg = FFNConfig(hidden=config.hidden_size, base_width=config.ffn_base_width,
                        dropout=config.hidden_dropout_prob, ln_eps=config.layer_norm_eps)
        from .attention import apply_attn
        attn = self.spec.attn or (None,) * len(self.spec)
        for layer, e, a in zip(self.bert.encoder.layer, self.spec.layers, attn):
            layer.intermediate = nn.Identity()
            if ffn is None:
                layer.output = ExprFFNOutput(lower(e, cfg))
            apply_attn(layer, a, config)
        self.post_init()
        if ffn is not None:  # FFNs that come with their weights (supernet slices): after the init, which redraws
            for i, (layer, e) in enumerate(zip(self.bert.encoder.layer, self.spec.layers)):
                layer.output = ExprFFNOutput(ffn(i, e, cfg))

    def save_pretrained(self, save_directory: str | Path, **kw) -> None:  # type: ignore[override]
        self.config.ffn_spec = str(self.spec)  # the text form is written here (pruned heads included)
        super().save_pretrained(save_directory, **kw)
        (Path(save_directory) / SPEC_FILE).write_text(self.spec.to_lines(), encoding="utf-8")


def ffn_modules(model: nn.Module) -> Iterator[fx.GraphModule]:
    """The lowered FFN of each layer, bottom to top."""
    for m in model.modules():
        if isinstance(m, ExprFFNOutput):
            yield m.ffn


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


def _hf_config(spec: ModelSpec, cfg: StudentConfig) -> ExprBertConfig:
    if cfg.hidden % cfg.heads:
        raise ConfigError(f"hidden size {cfg.hidden} is not a multiple of heads {cfg.heads}")
    return ExprBertConfig(
        ffn_spec=str(spec.broadcast(cfg.layers)), ffn_base_width=cfg.base_width,
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads, intermediate_size=cfg.base_width or cfg.hidden,
        hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
        max_position_embeddings=cfg.max_position, type_vocab_size=cfg.type_vocab,
        num_labels=max(1, cfg.num_labels),
        problem_type="regression" if cfg.num_labels == 1 else "single_label_classification")


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
    from .teachers import bert_twin
    teacher = bert_twin(teacher)
    t_bert = getattr(teacher, "bert", teacher)
    s_bert = student.bert
    mapping = layer_map(rule, len(s_bert.encoder.layer), len(t_bert.encoder.layer))
    counts = {"embeddings": _copy(s_bert.embeddings, t_bert.embeddings), "attention": 0, "ffn": 0}
    for s_layer, t in zip(s_bert.encoder.layer, mapping):
        t_layer = t_bert.encoder.layer[t]
        counts["attention"] += _copy(s_layer.attention, t_layer.attention, sliced=True)
        counts["ffn"] += load_teacher_ffn(s_layer.output.ffn, t_layer.intermediate, t_layer.output)
    if getattr(s_bert, "pooler", None) is not None and getattr(t_bert, "pooler", None) is not None:
        counts["pooler"] = _copy(s_bert.pooler, t_bert.pooler)
    if hasattr(teacher, "classifier"):
        counts["classifier"] = _copy(student.classifier, teacher.classifier)
    return counts


def build_student(spec: ModelSpec | str, cfg: StudentConfig, teacher: PreTrainedModel | None = None,
                  ffn: FFNFactory | None = None) -> ExprBertForSequenceClassification:
    """A BERT student whose layer i FFN is ``spec[i]`` (a one-layer spec applies to every layer),
    built by ``ffn`` (default ``lower``), initialised from ``teacher`` where shapes allow.  A
    text spec is a library user's input and is parsed here; the library passes parsed specs."""
    if isinstance(spec, str):
        spec = parse_spec(spec, strict=False)
    if teacher is not None:
        from .teachers import teacher_shape
        tc = teacher_shape(teacher.config.to_dict())
        cfg = StudentConfig(**{**cfg.__dict__, "vocab_size": tc["vocab_size"], "type_vocab": tc["type_vocab_size"],
                               "max_position": tc["max_position_embeddings"]})
    spec = spec.broadcast(cfg.layers)
    model = ExprBertForSequenceClassification(_hf_config(spec, cfg), spec=spec, ffn=ffn)
    if teacher is not None:
        init_from_teacher(model, teacher, cfg.layer_map)
    return model


def set_dropout(model: torch.nn.Module, p: float) -> None:
    """Every dropout of ``model`` (hidden, attention, FFN blocks) to probability ``p``."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if hasattr(model, "config") and hasattr(model.config, key):
            setattr(model.config, key, p)
