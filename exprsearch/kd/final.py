"""specs + a prepared evaluator --> fully fine-tuned students: the final protocol.

Input: an ``Evaluator`` whose protocol holds training rows out (``heldout_rows`` > 0; its
teachers and warm supernets are the search's), parsed specs, a task, seeds and a ``FinalConfig``.
Output: per spec and seed a ``FinalRun`` -- the student at its best checkpoint, chosen on the
held-out training rows among evaluations every ``eval_every`` steps (EfficientBERT keeps the best
of evaluations every 50 steps), its dev metrics there, the step it came from and the held-out
curve.  Candidates of one seed train together in lock-step (``Evaluator.trainer``), each from the warm
supernet it inherits, by KD from the task's teacher for ``epochs`` passes over the training rows.
Invariants: the dev set is never used to choose anything (it is only reported); a candidate's
result does not depend on its group (dropout draws aside: ``dropout`` 0 makes it exact).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from exprsearch.errors import ConfigError
from exprsearch.lang.expr import ModelSpec

from .train import TrainConfig, dev_metrics

__all__ = ["FinalConfig", "FinalRun", "finetune", "final_steps"]


@dataclass(frozen=True)
class FinalConfig:
    """How the final protocol trains (learning rate, batch size and teachers: the evaluator's)."""

    epochs: float = 3.0             # passes over the training rows
    task_epochs: str = ""           # per-task epochs overriding ``epochs``, e.g. MRPC=5,RTE=5
    eval_every: int = 50            # steps between evaluations on the held-out rows (the best is kept)
    dropout: float | None = 0.1     # student dropout while fine-tuning (None: the teacher's)

    def __post_init__(self) -> None:
        if not self.epochs > 0 or self.eval_every < 1:
            raise ConfigError("final protocol: epochs must be > 0 and eval_every >= 1")

    def epochs_for(self, name: str) -> float:
        from .protocol import _per_task
        return _per_task("task_epochs", self.task_epochs, name, self.epochs)


@dataclass
class FinalRun:
    """One spec, one seed, one task under the final protocol."""

    spec: str
    seed: int
    status: str = "ok"                        # ok | failed
    reason: str = ""
    dev: dict[str, float] = field(default_factory=dict)      # dev metrics at the best checkpoint
    heldout: float | None = None                             # the held-out main metric it was chosen by
    best_step: int = 0
    steps: int = 0
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, held-out main metric)
    model: Any = None                         # the student at its best checkpoint (on the device)


def final_steps(ev: Any, task_name: str, cfg: FinalConfig) -> int:
    """Optimisation steps of ``cfg.epochs_for(task)`` passes over the evaluator's training rows."""
    return max(1, round(cfg.epochs_for(task_name) * len(ev.state[task_name].train)))


def finetune(ev: Any, specs: list[ModelSpec], task_name: str, seed: int, cfg: FinalConfig,
             log: Callable[[str], None] | None = None, keep_models: bool = True) -> list[FinalRun]:
    """Fine-tune ``specs`` on ``task_name`` with training seed ``seed`` (see the module docstring)."""
    from exprsearch.compiler.student import set_dropout
    st = ev.state[task_name]
    if st.heldout is None:
        raise ConfigError("the final protocol chooses its checkpoint on held-out training rows: "
                          "prepare the evaluator with heldout_rows > 0")
    log = log or ev.log
    steps = final_steps(ev, task_name, cfg)
    members = ev.members(st, list(specs), seed)
    for m in members:
        if cfg.dropout is not None:
            set_dropout(m.model, cfg.dropout)
        else:
            set_dropout(m.model, st.teacher.config.hidden_dropout_prob)
    runs = [FinalRun(str(s), seed, steps=steps) for s in specs]
    best: list[float] = [float("-inf")] * len(members)
    snapshots: list[dict[str, torch.Tensor] | None] = [None] * len(members)
    main = st.task.main

    def checkpoint(step: int, means: dict[int, float]) -> dict[int, str]:
        for i in means:  # the members still running
            value = dev_metrics(members[i].model, st.heldout, st.task, ev.device)[main]
            runs[i].curve.append((step, value))
            if value > best[i]:
                best[i], runs[i].best_step = value, step
                snapshots[i] = {k: v.detach().clone() for k, v in members[i].model.state_dict().items()}
        return {}

    st.train.seed = seed
    tc = TrainConfig.from_eval(ev.cfg, steps=steps, seed=seed, log_every=min(cfg.eval_every, steps))
    trainer = ev.trainer(members, tc, log=log)
    log(f"final protocol on {task_name}: {len(members)} candidate(s), seed {seed}, {steps} steps, "
        f"best of evaluations every {tc.log_every} steps on {len(st.heldout)} held-out rows")
    outs = trainer.train(st.train, on_log=checkpoint)
    for i, (m, o) in enumerate(zip(members, outs)):
        r = runs[i]
        if o.failed is not None or snapshots[i] is None:
            r.status, r.reason = "failed", str(o.failed or "no checkpoint was evaluated")
            continue
        m.model.load_state_dict(snapshots[i])
        m.model.eval()
        r.heldout, r.dev = best[i], dev_metrics(m.model, st.dev, st.task, ev.device, std=True)
        r.model = m.model if keep_models else None
    del trainer
    return runs

