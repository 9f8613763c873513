"""specs + a prepared evaluator --> fully fine-tuned students: the final protocol.

Input: an ``Evaluator`` whose protocol holds training rows out (``heldout_rows`` > 0; its
teachers and warm supernets are the search's), parsed specs, a task, seeds and a ``FinalConfig``.
Output: per spec and seed a ``FinalRun`` -- the student at its best checkpoint, chosen on the
held-out training rows among evaluations every ``eval_every`` steps (EfficientBERT keeps the best
of evaluations every 50 steps), its dev metrics there, the step it came from and the held-out
curve.  Candidates of one seed train together in lock-step (``Evaluator.trainer``), each from the warm
supernet it inherits, by KD from the task's teacher for ``epochs`` passes over the training rows --
at least ``min_steps`` steps and ``min_evals`` evaluations, so small tasks (MRPC, RTE) converge
too.  ``convergence`` compares the runs with a ``scale`` x longer run: converged when every best
checkpoint came before the last evaluation and the longer run is not better beyond seed noise.
Reported comparisons train with ``fresh_seeds``: never a seed the search or its re-ranks used.
Invariants: the dev set is never used to choose anything (it is read once per run, at the chosen
checkpoint, and only reported); a candidate's result does not depend on its group (dropout draws
aside: ``dropout`` 0 makes it exact).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, cast

import torch

from exprsearch.compiler.student import ExprBertForSequenceClassification
from exprsearch.engine.train import TrainConfig, dev_metrics
from exprsearch.errors import ConfigError
from exprsearch.lang.expr import ModelSpec

if TYPE_CHECKING:
    from .evaluate import Evaluator

__all__ = ["FinalConfig", "FinalRun", "finetune", "final_steps", "fresh_seeds", "convergence", "FRESH_SEED"]

FRESH_SEED = 10_000  # reported comparisons train with seeds from here: never a search's or a re-rank's seed


@dataclass(frozen=True)
class FinalConfig:
    """How the final protocol trains (learning rate, batch size and teachers: the evaluator's)."""

    epochs: float = 3.0             # passes over the training rows
    task_epochs: str = ""           # per-task epochs overriding ``epochs``, e.g. MRPC=5,RTE=5
    eval_every: int = 50            # steps between evaluations on the held-out rows (the best is kept)
    dropout: float | None = 0.1     # student dropout while fine-tuning (None: the teacher's)
    min_steps: int = 300            # at least this many steps per task (small tasks: more epochs)
    min_evals: int = 6              # at least this many held-out evaluations per task (eval_every shrinks)
    scale: float = 1.0              # steps x this (the convergence check's longer run: 1.5)

    def __post_init__(self) -> None:
        from exprsearch.errors import check_number, check_whole
        check_number(self, "epochs", "scale", above=0)
        check_whole(self, "eval_every", "min_evals", least=1)
        check_whole(self, "min_steps", least=0)
        if self.dropout is not None:
            check_number(self, "dropout", least=0, below=1)

    def epochs_for(self, name: str) -> float:
        from .protocol import _per_task
        return _per_task("task_epochs", self.task_epochs, name, self.epochs)

    def every(self, steps: int) -> int:
        """Steps between evaluations in a run of ``steps`` steps: ``eval_every``, or fewer so that
        there are at least ``min_evals``.

        >>> FinalConfig(eval_every=50).every(115), FinalConfig(eval_every=50).every(1000)
        (19, 50)
        """
        return max(1, min(self.eval_every, steps // self.min_evals))


@dataclass
class FinalRun:
    """One spec, one seed, one task under the final protocol."""

    spec: str
    seed: int
    status: str = "ok"                        # ok | failed
    reason: str = ""
    dev: dict[str, float] = field(default_factory=dict)      # dev metrics at the best checkpoint
    heldout: float | None = None                             # the held-out main metric it was chosen by
    heldout_std: float | None = None                         # its bootstrap std over the held-out rows
    best_step: int = 0
    steps: int = 0
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, held-out main metric)
    model: ExprBertForSequenceClassification | None = None  # the student at its best checkpoint (on the device)

    @property
    def best_before_last(self) -> bool:
        """The best checkpoint came before the last evaluation (the curve had turned or flattened)."""
        return bool(self.curve) and self.best_step < self.curve[-1][0]

    def as_dict(self) -> dict[str, Any]:
        """Everything but the model (the JSON a benchmark keeps: curve and best step included)."""
        return {"spec": self.spec, "seed": self.seed, "status": self.status, "reason": self.reason, "dev": self.dev,
                "heldout": self.heldout, "heldout_std": self.heldout_std, "best_step": self.best_step,
                "steps": self.steps, "best_before_last": self.best_before_last, "curve": self.curve}


def fresh_seeds(n: int, used: Iterable[int] = ()) -> list[int]:
    """``n`` training seeds for a reported comparison: from ``FRESH_SEED`` on, none of ``used``
    (the search's and its re-ranks' seeds), so no final run replays the batches -- data order and
    dropout -- that selected its candidate.

    >>> fresh_seeds(3, used=[0, 1, 2, 10_001])
    [10000, 10002, 10003]
    """
    out: list[int] = []
    taken, s = set(used), FRESH_SEED
    while len(out) < n:
        if s not in taken:
            out.append(s)
        s += 1
    return out


def final_steps(ev: Evaluator, task_name: str, cfg: FinalConfig) -> int:
    """Optimisation steps of ``cfg.epochs_for(task)`` passes over the evaluator's training rows
    (at least ``min_steps``), times ``scale``."""
    passes = round(cfg.epochs_for(task_name) * len(ev.state[task_name].train))
    return max(1, round(max(cfg.min_steps, passes) * cfg.scale))


def finetune(ev: Evaluator, specs: list[ModelSpec], task_name: str, seed: int, cfg: FinalConfig,
             log: Callable[[str], None] | None = None, keep_models: bool = True) -> list[FinalRun]:
    """Fine-tune ``specs`` on ``task_name`` with training seed ``seed`` (see the module docstring)."""
    from exprsearch.compiler.student import set_dropout
    st = ev.state[task_name]
    heldout = st.heldout
    if heldout is None:
        raise ConfigError("the final protocol chooses its checkpoint on held-out training rows: "
                          "prepare the evaluator with heldout_rows > 0")
    log = log or ev.log
    steps = final_steps(ev, task_name, cfg)
    members = ev.members(st, list(specs), seed)
    models = [cast(ExprBertForSequenceClassification, m.model) for m in members]  # the students ev.members built
    for model in models:
        if cfg.dropout is not None:
            set_dropout(model, cfg.dropout)
        else:
            set_dropout(model, st.teacher.config.hidden_dropout_prob)
    runs = [FinalRun(str(s), seed, steps=steps) for s in specs]
    best: list[float] = [float("-inf")] * len(members)
    snapshots: list[dict[str, torch.Tensor] | None] = [None] * len(members)
    main = st.task.main

    def checkpoint(step: int, means: dict[int, float]) -> dict[int, str]:
        for i in means:  # the members still running
            got = dev_metrics(models[i], heldout, st.task, ev.device, std=True)
            runs[i].curve.append((step, got[main]))
            if got[main] > best[i]:
                best[i], runs[i].best_step, runs[i].heldout_std = got[main], step, got[f"{main}_std"]
                snapshots[i] = {k: v.detach().clone() for k, v in models[i].state_dict().items()}
        return {}

    st.train.seed = seed
    tc = TrainConfig.from_eval(ev.cfg, steps=steps, seed=seed, log_every=cfg.every(steps))
    trainer = ev.trainer(members, tc, log=log)
    log(f"final protocol on {task_name}: {len(members)} candidate(s), seed {seed}, {steps} steps, "
        f"best of evaluations every {tc.log_every} steps on {len(heldout)} held-out rows")
    outs = trainer.train(st.train, on_log=checkpoint)
    for i, (model, o) in enumerate(zip(models, outs)):
        r, snapshot = runs[i], snapshots[i]
        if o.failed is not None or snapshot is None:
            r.status, r.reason = "failed", str(o.failed or "no checkpoint was evaluated")
            continue
        model.load_state_dict(snapshot)
        model.eval()
        r.heldout, r.dev = best[i], dev_metrics(model, st.dev, st.task, ev.device, std=True)
        r.model = model if keep_models else None
    del trainer
    return runs


def convergence(runs: list[FinalRun], longer: list[FinalRun]) -> dict[str, Any]:
    """Did one spec's final protocol converge?  ``runs``: its runs over seeds; ``longer``: runs
    of ``scale`` x the steps on some of the same seeds.  Converged: in every run the best
    checkpoint came before the last evaluation, and the longer runs' held-out best is not above
    this protocol's on the same seeds by more than the seed noise (the std of the held-out best
    over ``runs``'s seeds; at least the mean bootstrap std of one score).

    >>> a = [FinalRun("s", k, heldout=0.80 + 0.01 * k, heldout_std=0.01, best_step=100, curve=[(100, 0.8), (200, 0.79)])
    ...      for k in range(3)]
    >>> b = [FinalRun("s", 0, heldout=0.805, best_step=250, curve=[(250, 0.805), (300, 0.8)])]
    >>> c = convergence(a, b)
    >>> c["converged"], round(c["longer_minus_this"], 3), round(c["noise"], 3)
    (True, 0.005, 0.01)
    """
    ok = [r for r in runs if r.status == "ok" and r.heldout is not None]
    held = [r.heldout for r in ok if r.heldout is not None]  # (all of them)
    by_seed = {r.seed: r.heldout for r in ok if r.heldout is not None}
    pairs = [(r.heldout, by_seed[r.seed]) for r in longer
             if r.status == "ok" and r.heldout is not None and r.seed in by_seed]
    seed_sd = statistics.stdev(held) if len(held) > 1 else 0.0
    boot = [r.heldout_std for r in ok if r.heldout_std is not None]
    noise = max(seed_sd, sum(boot) / len(boot) if boot else 0.0)
    gain = sum(a - b for a, b in pairs) / len(pairs) if pairs else None
    before = all(r.best_before_last for r in ok) and bool(ok)
    return {"best_before_last": before, "best_steps": [r.best_step for r in ok],
            "last_eval": [r.curve[-1][0] if r.curve else None for r in ok], "longer_seeds": len(pairs),
            "longer_minus_this": gain, "noise": noise,
            "converged": before and (gain is not None and gain <= noise)}
