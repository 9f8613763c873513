"""stage-2 winner --> best X_Y per layer (on a weight-sharing supernet) --> multi-task student.

Input: a ``Search`` whose stages 1-2 stored candidates.  Output: stored stage-3 rows -- the ranked
X_Y assignments (scored by the supernet's sub-model on each task's held-out rows, no per-candidate
training: the proxy) and the winner fine-tuned multi-task (one shared encoder, one classifier head
per task).  Invariants: the expression bodies never change in this stage; the supernet is trained
with a uniformly drawn X_Y per layer per step, so every assignment it ranks was trained as often.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Iterator

import torch

from exprsearch.compiler.execute import to_device
from exprsearch.compiler.student import set_dropout
from exprsearch.kd.distill import KDLoss
from exprsearch.kd.evaluate import Evaluator
from exprsearch.kd.prepare import TaskState
from exprsearch.lang.expr import AttnSpec, Expr, ModelSpec, node
from exprsearch.lang.ops import BLOCK_CHOICES, RATIO_CHOICES, Kind, linear_op
from exprsearch.rows.glue import score
from exprsearch.rows.tokens import Batch


if TYPE_CHECKING:
    from .search import Search

__all__ = ["run_stage3", "with_xy"]


def with_xy(e: Expr, blocks: int, ratio: int) -> Expr:
    """``e`` with every linear's X_Y replaced."""
    op = linear_op(blocks, ratio)
    out = e
    for path, n in list(e.walk_paths()):
        if n.kind is Kind.LINEAR:
            out = out.replace_at(path, node(op, out.at(path).args[0], n.args[1]))
    return out


def _random_xy(bodies: tuple[Expr, ...], rng: random.Random,
               attn: tuple[AttnSpec | None, ...] | None = None) -> ModelSpec:
    return ModelSpec(tuple(with_xy(b, rng.choice(BLOCK_CHOICES), rng.choice(RATIO_CHOICES)) for b in bodies), attn)


def run_stage3(search: "Search") -> None:
    best = max(filter(None, (search.best(stage=1), search.best(stage=2))), key=lambda r: r["score"], default=None)
    if best is None:
        search.log("stage 3 skipped: no successful candidate from stages 1-2")
        return
    done = [r for r in search.store.candidates(search.run_id) if r["stage"] == 3]
    best_spec = search.spec_of(best)
    bodies, attn = best_spec.layers, best_spec.attn
    ev = search.evaluator()
    cfg, scfg = search.ecfg, search.scfg
    rng = random.Random(scfg.seed * 1000 + 3)
    if any(r["key"].endswith("@multitask") for r in done):
        return
    ranked = {r["key"] for r in done}
    if len(ranked) < scfg.stage3_candidates:  # (re)train: a resumed run lost the trained supernets
        search.log(f"stage 3: training the supernets ({scfg.supernet_steps} steps per task, uniformly "
                   f"sampled X_Y per layer), then ranking {scfg.stage3_candidates} assignments")
        for st in ev.state.values():
            kd = KDLoss(st.teacher, st.supernet.model, st.task, cfg.kd()).to(ev.device)

            def loss(batch: Batch, st: TaskState = st, kd: KDLoss = kd) -> torch.Tensor:
                st.supernet.use_spec(_random_xy(bodies, rng))  # FFN sizes only: the supernet's attention
                return kd(st.supernet.model, batch)

            ev.train(loss, st.supernet.trainable() + list(kd.named_parameters()), st.train, scfg.supernet_steps)
        options = [best_spec] + [_random_xy(bodies, rng, attn) for _ in range(scfg.stage3_candidates - 1)]
        for spec in options:
            key = search.key(spec) + "@proxy"  # its own row: the same spec may be stored by stage 1-2
            if key in search.seen or key in ranked:
                continue
            if search.over_budget(spec):
                search.stats["over_budget"] += 1
                continue
            metrics = {}
            for name, st in ev.state.items():
                if spec.attn is None and len(spec) == ev.cfg.layers:
                    st.supernet.use_spec(spec)
                    metrics[name] = st.selection_metrics(cfg, st.supernet.model, ev.device)
                else:  # attention changes and depth are not part of the supernet: score the inheritor
                    metrics[name] = st.selection_metrics(cfg, ev.student(name, spec), ev.device)
            fitness = score(metrics, ev.tasks)
            search.store.add(search.run_id, {"key": key, "spec": str(spec), "status": "ok", "score": fitness,
                                             "metrics": metrics, **search.prices(spec).row(),
                                             "reason": "supernet proxy (no per-candidate training)"},
                             eval_hash=search.hash + "-proxy", stage=3, worker="supernet")
            search.seen.add(key)
            done.append({"key": key, "stage": 3, "spec": str(spec), "score": fitness, "status": "ok"})
        for st in ev.state.values():
            st.supernet.use(4, 1)
    proxies = [r for r in search.store.candidates(search.run_id) if r["stage"] == 3 and r["status"] == "ok"]
    winner = max(proxies, key=lambda r: r["score"])
    search.log(f"stage 3: winner {winner['spec']} (proxy {winner['score']:.2f}); multi-task fine-tuning "
               f"for {scfg.multitask_steps} steps")
    spec = search.spec_of(winner)
    metrics = multitask_finetune(ev, spec, scfg.multitask_steps)
    search.store.add(search.run_id, {"key": winner["key"].replace("@proxy", "@multitask"), "spec": winner["spec"],
                                     "status": "ok", "score": score(metrics, ev.tasks), "metrics": metrics,
                                     **search.prices(spec).row(),
                                     "reason": "stage-3 winner, multi-task fine-tuned"},
                     eval_hash=search.hash + "-multitask", stage=3, worker="multitask")


class _RoundRobin:
    """Batches of every task in turn (the multi-task stream)."""

    def __init__(self, states: list[TaskState]) -> None:
        self.states = states

    def forever(self) -> Iterator[tuple[str, Batch]]:
        streams = [(st.task.name, st.train.forever()) for st in self.states]
        while True:
            for name, s in streams:
                yield name, next(s)


def multitask_finetune(ev: Evaluator, spec: ModelSpec, steps: int) -> dict[str, dict[str, float]]:
    """One shared encoder (from the first task's supernet), one head per task (from each task's
    supernet), KD from each task's teacher on round-robin batches; per task the metrics the
    search selects by (held-out rows: ``TaskState.selection_metrics``)."""
    states = list(ev.state.values())
    models = {st.task.name: to_device(st.supernet.extract(spec), ev.device).train() for st in states}
    if ev.cfg.dropout is not None:
        for m in models.values():
            set_dropout(m, ev.cfg.dropout)
    shared = models[states[0].task.name].bert
    for m in models.values():
        m.bert = shared
    kds = {st.task.name: KDLoss(st.teacher, models[st.task.name], st.task, ev.cfg.kd()).to(ev.device)
           for st in states}
    params: dict[int, tuple[str, torch.nn.Parameter]] = {}
    for name, m in models.items():
        for n, p in list(m.named_parameters()) + list(kds[name].named_parameters()):
            params.setdefault(id(p), (f"{name}.{n}", p))
    ev.train(lambda tb: kds[tb[0]](models[tb[0]], tb[1]), list(params.values()), _RoundRobin(states), steps)
    return {st.task.name: st.selection_metrics(ev.cfg, models[st.task.name], ev.device) for st in states}
