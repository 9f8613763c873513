"""teacher + student --> distillation loss; teacher --> warm-up supernet student.

Input: a fine-tuned teacher, a student (or the supernet student) and a ``KDConfig``.  Output: the
loss of one batch (``KDLoss``), and ``SupernetStudent``: a BERT student whose every layer holds a
``SuperFFN`` (largest X and D), initialised from the teacher and warmed up by KD once per task;
candidates then inherit it (first X blocks, first d channels).  Invariants: the teacher runs
under ``no_grad`` in eval mode; student layer i is matched to teacher layer ``layer_map[i]``;
hidden states of different widths meet through one learned projection (as in the reference).

Loss = w_logits * soft cross-entropy(student / T, teacher / T)   (MSE for regression)
     + w_hidden * sum_i MSE(proj(h_s[i]), h_t[map(i)])           (embeddings included)
     + w_attn   * sum_i MSE(attention_s[i], attention_t[map(i)])  (needs eager attention)
     + w_task   * task loss on the labels                         (the no-KD baseline uses only this)
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import fx, nn
from transformers import PreTrainedModel

from exprsearch.compiler import FFNConfig, StudentConfig, build_student, layer_map
from exprsearch.compiler.heads import encoder_layers
from exprsearch.compiler.hf.configuration_exprbert import ExprBertConfig
from exprsearch.compiler.student import ExprBertForSequenceClassification, _copy
from exprsearch.compiler.supernet import MAX_BLOCKS, SuperFFN, load_slices, load_teacher_ffn, lower_shared
from exprsearch.compiler.teachers import bert_twin
from exprsearch.errors import ConfigError
from exprsearch.lang.expr import WB3, Expr, ModelSpec
from exprsearch.lang.ops import BLOCK_CHOICES, RATIO_CHOICES
from exprsearch.lang.standard import standard_ffn
from exprsearch.rows.glue import Task
from exprsearch.rows.tokens import Batch

if TYPE_CHECKING:
    from exprsearch.space.generate import Space

__all__ = ["KDConfig", "KDLoss", "SupernetStudent", "ExprPool"]


@dataclass(frozen=True)
class KDConfig:
    """Weights of the distillation terms."""

    w_logits: float = 1.0        # soft cross-entropy on logits (MSE for regression)
    temperature: float = 1.0     # softmax temperature of the logit term
    w_hidden: float = 1.0        # hidden-state MSE (through a projection if widths differ)
    w_attn: float = 0.0          # attention-probability MSE (forces eager attention: slower)
    w_task: float = 0.0          # cross-entropy on the gold labels
    layer_map: str = "uniform"   # student layer -> teacher layer: uniform | first | e.g. 1,3,5


class KDLoss(nn.Module):
    """One batch's distillation loss; owns the hidden-state projection (a trainable parameter)."""

    def __init__(self, teacher: PreTrainedModel, student: ExprBertForSequenceClassification | SupernetStudent,
                 task: Task, cfg: KDConfig) -> None:
        super().__init__()
        self.teacher, self.task, self.cfg = teacher.eval(), task, cfg
        for p in teacher.parameters():
            p.requires_grad_(False)
        s, t = student.config, teacher.config
        self.map = layer_map(cfg.layer_map, s.num_hidden_layers, t.num_hidden_layers)
        self.proj = nn.Linear(s.hidden_size, t.hidden_size) if s.hidden_size != t.hidden_size else nn.Identity()
        if cfg.w_attn and s.num_attention_heads != t.num_attention_heads:
            raise ConfigError("attention KD needs the same number of heads in student and teacher")

    @property
    def needs_teacher(self) -> bool:
        """False for the labels-only baseline: no teacher forward at all."""
        return bool(self.cfg.w_logits or self.cfg.w_hidden or self.cfg.w_attn)

    @torch.no_grad()
    def teacher_outputs(self, batch: Batch) -> Any:
        """The teacher's logits (and hidden states / attentions when the loss needs them) for a
        batch: computed once and shared when several students learn from the same batch."""
        c = self.cfg
        return self.teacher(**batch.inputs_for(self.teacher), output_hidden_states=c.w_hidden > 0,
                            output_attentions=c.w_attn > 0)

    def forward(self, student: nn.Module, batch: Batch, teacher_out: Any = None) -> torch.Tensor:
        c = self.cfg
        want_h, want_a = c.w_hidden > 0, c.w_attn > 0
        if teacher_out is None and self.needs_teacher:
            teacher_out = self.teacher_outputs(batch)
        t = teacher_out
        s = student(**batch.inputs_for(student), output_hidden_states=want_h, output_attentions=want_a)
        s_logits = s.logits.float()
        loss = s_logits.new_zeros(())
        if c.w_logits:
            t_logits = t.logits.float()
            if self.task.regression:
                loss = loss + c.w_logits * F.mse_loss(s_logits, t_logits)
            else:
                tt = F.softmax(t_logits / c.temperature, -1)
                loss = loss + c.w_logits * -(tt * F.log_softmax(s_logits / c.temperature, -1)).sum(-1).mean()
        if want_h or want_a:
            mask = batch.attention_mask.unsqueeze(-1).to(s_logits.dtype)
            denom = mask.sum()
        if want_h:
            pairs = [(0, 0)] + [(i + 1, j + 1) for i, j in enumerate(self.map)]
            for i, j in pairs:
                diff = self.proj(s.hidden_states[i]).float() - t.hidden_states[j].float()
                loss = loss + c.w_hidden * (diff.pow(2) * mask).sum() / (denom * diff.shape[-1])
        if want_a:
            for i, j in enumerate(self.map):
                loss = loss + c.w_attn * F.mse_loss(s.attentions[i].float(), t.attentions[j].float())
        if c.w_task:
            loss = loss + c.w_task * task_loss(s_logits, batch, self.task)
        return loss


def task_loss(logits: torch.Tensor, batch: Batch, t: Task) -> torch.Tensor:
    if t.regression:
        return F.mse_loss(logits[:, 0], batch.labels)
    return F.cross_entropy(logits, batch.labels.long())


class ExprPool:
    """What an op-sampling warm-up draws, layer by layer: the standard FFN of the step's (X, Y)
    with probability ``p_standard`` -- drawn for each layer on its own, so no layer position is
    favoured --, else one of ``size`` valid expressions of the search's own space per (X, Y),
    sampled once (each is lowered once per layer, then its view is reused).  A gated space's pool
    is half gated forms (drawn uniformly among them; they are ~8 % of such a space, so a uniform
    pool of 16 would leave some (X, Y) without one), so the gate matrix ``wb3`` that gated
    candidates inherit is trained at every size.

    >>> pool = ExprPool(random.Random(0), size=4)
    >>> e = pool.draw(random.Random(1), 2, 3)
    >>> e.linears()[0].op.name, len(pool.exprs[(2, 3)])
    ('linear2_3', 4)
    """

    def __init__(self, rng: random.Random, size: int = 16, p_standard: float = 0.25, space: Space | None = None
                 ) -> None:
        from exprsearch.space.generate import Space, sample
        base = space or Space()

        def draw_where(sp: Space, gated: bool) -> Expr:
            while True:
                e = sample(sp, rng)
                if not base.gates or any(n is WB3 for n in e.walk()) == gated:
                    return e

        self.exprs = {(x, y): [draw_where(replace(base, blocks=(x,), ratios=(y,)), k < size // 2)
                               for k in range(size)] for x in BLOCK_CHOICES for y in RATIO_CHOICES}
        self.p_standard = p_standard

    def draw(self, rng: random.Random, x: int, y: int) -> Expr:
        """One layer's expression for a step whose sub-model is (X, Y)."""
        if rng.random() < self.p_standard:
            return standard_ffn(x, y)
        return rng.choice(self.exprs[(x, y)])


class SupernetStudent(nn.Module):
    """A BERT student whose FFNs are weight-sharing supernets; ``use(x, y)`` or ``use_spec(spec)``
    picks the sub-model the next forward runs (its parameters are views of the supernets).  Each
    block holds a gate matrix ``wb3`` too, loaded like ``wb1`` from the teacher's
    ``intermediate.dense`` (a gate starts equal to the value path; training separates them), so
    gated candidates use, and inherit, its first d rows."""

    def __init__(self, cfg: StudentConfig, teacher: PreTrainedModel | None = None) -> None:
        super().__init__()
        twin: Any = None  # the teacher's BERT twin: its parts known by BERT's attribute names
        if teacher is not None:  # the shapes build_student takes from the teacher, kept for extract()
            twin = bert_twin(teacher)  # any BERT-family teacher, under BERT's names
            tc = twin.config
            cfg = replace(cfg, vocab_size=tc.vocab_size, max_position=tc.max_position_embeddings,
                          type_vocab=tc.type_vocab_size)
        self.cfg = cfg
        self.model = build_student(ModelSpec((standard_ffn(),)), cfg, twin)
        fcfg = FFNConfig(hidden=cfg.hidden, base_width=cfg.base_width, dropout=cfg.dropout,
                         ln_eps=self.model.config.layer_norm_eps)
        self.supers = nn.ModuleList(SuperFFN(fcfg) for _ in range(cfg.layers))
        if twin is not None:
            t_bert = getattr(twin, "bert", twin)
            for sup, t in zip(self.supers, layer_map(cfg.layer_map, cfg.layers, len(t_bert.encoder.layer))):
                load_teacher_ffn(sup, t_bert.encoder.layer[t].intermediate, t_bert.encoder.layer[t].output)
        self._views: dict[tuple[Expr, int], fx.GraphModule] = {}
        self.use(MAX_BLOCKS, 1)

    @property
    def config(self) -> ExprBertConfig:
        return self.model.config

    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        """Every parameter: the supernets' and the rest of the model's (not the swapped views)."""
        own = [(n, p) for n, p in self.model.named_parameters() if ".ffn." not in n]
        return own + [(f"supers.{n}", p) for n, p in self.supers.named_parameters()]

    def use_spec(self, spec: ModelSpec) -> None:
        for i, (layer, e) in enumerate(zip(self.model.bert.encoder.layer, spec.broadcast(self.cfg.layers))):
            key = (e, i)  # interned: equal expressions are one object
            if key not in self._views:
                self._views[key] = lower_shared(e, cast(SuperFFN, self.supers[i]))
            layer.ffn = self._views[key]

    def use(self, x: int, y: int) -> None:
        self.use_spec(ModelSpec((standard_ffn(x, y),)))

    def sample(self, rng: random.Random, layerdrop: float = 0.0, pool: "ExprPool | None" = None
               ) -> tuple[int, int]:
        """Use a uniformly drawn (X, Y) sub-model: the standard FFN of that size, or with ``pool``
        an expression of the search space of that size per layer (op sampling: the inherited
        weights then favour no activation); with ``layerdrop`` also skip random layers."""
        x, y = rng.choice(BLOCK_CHOICES), rng.choice(RATIO_CHOICES)
        if pool is None:
            self.use(x, y)
        else:
            self.use_spec(ModelSpec(tuple(pool.draw(rng, x, y) for _ in range(self.cfg.layers))))
        if layerdrop:
            from exprsearch.compiler.layerdrop import sample_skips, set_skips
            set_skips(self.model, sample_skips(self.cfg.layers, layerdrop, rng))
        return x, y

    def forward(self, **kw: Any) -> Any:
        return self.model(**kw)

    @torch.no_grad()
    def extract(self, spec: ModelSpec, keep_layers: list[int] | None = None) -> ExprBertForSequenceClassification:
        """A standalone student for ``spec`` inheriting every weight: embeddings, attention, pooler
        and classifier copied, each FFN the supernet slice it uses (``load_slices``: each layer lowered
        once).  ``keep_layers``: a shallower student made of these supernet layers (LayerDrop),
        ``spec`` giving one expression per kept layer.  Built on the supernet's device."""
        keep = list(range(self.cfg.layers)) if keep_layers is None else list(keep_layers)
        if not keep or len(set(keep)) != len(keep) or not all(0 <= k < self.cfg.layers for k in keep):
            raise ConfigError(f"keep_layers {keep}: distinct layers of 0..{self.cfg.layers - 1}")
        spec = spec.broadcast(len(keep))
        cfg = replace(self.cfg, layers=len(keep), type_vocab=self.model.config.type_vocab_size)
        with torch.device(next(self.parameters()).device):
            student = build_student(spec, cfg)
        for i, (layer, e) in enumerate(zip(encoder_layers(student), spec.layers)):
            load_slices(layer.ffn, cast(SuperFFN, self.supers[keep[i]]), e)  # each FFN: the supernet slices it uses
        _copy(student, self.model, sliced=True, layers=keep, skip=".ffn.")  # the rest; pruned heads keep the first
        student.config._attn_implementation = self.model.config._attn_implementation
        return student


