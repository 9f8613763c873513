"""model specs --> fitness: warm-up KD of candidates on GLUE tasks, a group at a time, robust to failures.

Input: parsed ``ModelSpec`` s (one expression broadcasts to every layer) and an ``EvalConfig``.
Output: one ``CandidateResult`` each -- per-task dev metrics with their bootstrap std, the score
(mean of the tasks' main metrics, x100), params, FLOPs per token, seconds, learning curves -- or
status ``failed``/``stopped`` with the reason.  Pipeline per task (EfficientBERT's warm-up KD):
fine-tuned teacher (cached) -> supernet student warmed up by KD once (cached, ``prepare.py``) ->
each candidate inherits it (first X blocks, first d channels) -> ``cfg.group`` candidates trained
in lock-step for ``steps`` KD steps (``group.py``: one batch, one teacher pass, CUDA graphs) ->
dev metric.  Group size: ``cfg.group``, or (0) sized to the GPU's free memory on first use
(``sizing.py``; 8 on the CPU).  Invariants: everything a task needs is built once per
``Evaluator``; what a candidate causes -- a NaN/Inf loss, exploding gradients, an error from its
expression (``RuntimeError``, our ``ExprSearchError`` s) -- fails only that candidate (a group that
breaks is re-run one candidate at a time); running out of memory is the group's: it is halved
(and stays halved) and retried, and a lone candidate is retried without CUDA graphs before it
fails; any other exception (a bug, a device fault: ``DeviceError``) propagates.  With
``dropout`` 0 a candidate's result does not depend on its group, and with the same seed a run is
reproducible on CPU.
"""
from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, cast

import torch

from exprsearch.compiler.execute import to_device
from exprsearch.compiler.student import ExprBertForSequenceClassification, attach_spec, set_dropout
from exprsearch.engine.blame import candidates_fault as _candidates
from exprsearch.engine.group import B, GroupTrainer, Member, Outcome, is_oom, train_one
from exprsearch.engine.sizing import Plan
from exprsearch.engine.train import CandidateFailed, Curve, TrainConfig, dev_metrics
from exprsearch.errors import ConfigError
from exprsearch.lang.expr import ModelSpec
from exprsearch.lang.standard import standard_ffn
from exprsearch.rows.glue import score, task
from exprsearch.rows.tokens import Batches

from .distill import KDLoss
from .prepare import TaskState, locations, prefill, prepare
from .protocol import EvalConfig, teacher_config

CPU_GROUP = 8  # group size on the CPU when the config leaves it to the evaluator (0)

__all__ = ["EvalConfig", "CandidateResult", "Evaluator", "teacher_config", "CPU_GROUP"]


@dataclass
class CandidateResult:
    spec: str                                   # the canonical per-layer spec
    status: str = "ok"                          # ok | failed | stopped
    reason: str = ""
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> metric -> value
    score: float | None = None                  # mean main metric over tasks, x100
    params: int = 0
    ffn_params: int = 0                         # of which the FFNs'
    flops_per_token: float = 0.0
    latency_ms: float | None = None             # inference, one batch (latency_batch x latency_len): median
    latency: dict[str, Any] = field(default_factory=dict)  # its spread and ratio to the standard FFN (timing.Latency)
    seconds: float = 0.0
    curves: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Evaluator:
    """Holds per-task teachers, data and warm supernets; ``evaluate(spec)`` scores one candidate."""

    def __init__(self, cfg: EvalConfig, log: Callable[[str], None] = print) -> None:
        self.cfg, self.log = cfg, log
        self.device = cfg.torch_device()
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
        threads = None
        if self.device.type != "cuda":  # threads on a core another process holds stall every step: take the free ones
            from exprsearch.engine.threads import apply
            threads = apply(cfg.threads)
        self.data_dir, self.teacher_dir, self.cache = locations(cfg)
        self.tasks = [task(t) for t in cfg.tasks]
        if not self.tasks:
            raise ConfigError("no tasks to evaluate on")
        if cfg.layerdrop and cfg.w_attn:
            raise ConfigError("attention-map KD (w_attn > 0) cannot follow skipped layers; use it without --layerdrop")
        prefill(cfg, log)
        self.state = {t.name: prepare(cfg, t, self.device, self.data_dir, self.teacher_dir, self.cache, log)
                      for t in self.tasks}
        if threads is not None:  # said once the tasks are read (a bad task or file is the only line)
            log(f"CPU threads: {threads.count} ({threads.why})")
        self._group_size: int | None = cfg.group if cfg.group > 0 else None
        self.graphs = cfg.cuda_graphs
        sup = next(iter(self.state.values())).supernet  # latencies are timed beside its standard-FFN student
        self._reference = (to_device(sup.extract(ModelSpec((standard_ffn(),))), self.device).eval()
                           if cfg.latency_batch else None)

    # -- execution sizes -----------------------------------------------------------------------------
    @property
    def group(self) -> int:
        """Candidates trained at once: ``cfg.group``, or sized to the GPU on first use."""
        if self._group_size is None:
            self.size()
        return self._group_size or CPU_GROUP

    def size(self, workers: int = 0) -> Plan:
        """Plan group size, worker count and CUDA graphs for this protocol on this device (on CUDA
        measured and logged: ``sizing.size_to_gpu``); this evaluator adopts the group size and
        graphs setting.  Explicit ``cfg.group`` / ``workers`` are kept (with a warning when they
        will not fit)."""
        from exprsearch.engine.sizing import size_to_gpu
        p = (size_to_gpu(self, workers) if self.device.type == "cuda"
             else Plan(self.cfg.group or CPU_GROUP, workers or 1, False))
        self._group_size, self.graphs = p.group, p.graphs
        return p

    # -- candidates ------------------------------------------------------------------------------
    def evaluate(self, spec: ModelSpec, *, steps: int | None = None, seed: int | None = None,
                 report_dev: bool = False) -> CandidateResult:
        """Train and score one candidate on every task; never raises for a broken candidate."""
        return self.evaluate_many([spec], steps=steps, seed=seed, report_dev=report_dev)[0]

    def evaluate_many(self, specs: list[ModelSpec], *, steps: int | None = None, seed: int | None = None,
                      report_dev: bool = False) -> list[CandidateResult]:
        """Train and score candidates on every task, ``self.group`` at a time in lock-step (the same
        batches, one teacher forward per batch); a broken candidate fails alone.  ``seed`` (default
        ``cfg.seed``) orders the batches and seeds the candidates' training; the teachers and warm
        supernets stay those of ``cfg.seed``.  The score is read from the held-out training rows
        (``TaskState.selection_metrics``); the dev rows are read only with ``report_dev`` (a report
        of these candidates, never a search: its selections must not see them).  Each result's
        ``seconds`` is its share of the wall clock."""
        parsed = [self._canonical(s) for s in specs]
        res = [CandidateResult(spec=str(s)) for s in parsed]
        t0 = time.perf_counter()
        for name, st in self.state.items():
            alive = [i for i, r in enumerate(res) if r.status == "ok"]
            while alive:  # the group size may shrink on the way (out of memory)
                chunk, alive = alive[:self.group], alive[self.group:]
                n_steps = steps or self.cfg.steps_for(name)
                for i, run in zip(chunk, self._train_group(st, [parsed[i] for i in chunk], n_steps, seed,
                                                           report_dev=report_dev)):
                    self._record(res[i], name, run)
        share = (time.perf_counter() - t0) / max(1, len(res))
        for r in res:
            r.seconds = share
            if r.status == "ok":
                r.score = score(r.metrics, self.tasks)
        return res

    def _record(self, res: CandidateResult, name: str, run: "_Run") -> None:
        from exprsearch.compiler import student_cost
        if run.status != "ok":
            res.status, res.reason = run.status, f"{name}: {run.reason}"
            if run.curve is not None and run.status == "stopped":
                res.curves[name] = run.curve.as_dict()
            return
        assert run.curve is not None and run.student is not None  # an "ok" run has both
        res.metrics[name] = run.metrics
        res.curves[name] = run.curve.as_dict()
        if not res.params:
            try:
                cost = student_cost(run.student, min(self.cfg.max_len, 128))
                res.params, res.flops_per_token = cost["params"], cost["mm_flops_per_token"]
                res.ffn_params = cost["ffn_params"]
                self._latency(run.student, res)
            except Exception as err:  # noqa: BLE001 - the candidate's, or re-raised
                res.status, res.reason = "failed", f"{name}: {_candidates(err)}"

    def _canonical(self, spec: ModelSpec) -> ModelSpec:
        from exprsearch.lang.canon import canonicalize_spec
        if not isinstance(spec, ModelSpec):  # text is parsed at the edges (CLI, REPL, store), never here
            raise TypeError(f"the evaluator takes a parsed ModelSpec (exprsearch.parse_spec(text)), "
                            f"not {type(spec).__name__}")
        return canonicalize_spec(spec if 1 < len(spec) < self.cfg.layers else spec.broadcast(self.cfg.layers))

    def train_student(self, spec: ModelSpec, task_name: str | None = None
                      ) -> tuple[ExprBertForSequenceClassification, TaskState, dict[str, float]]:
        """Train ``spec`` on one task exactly as ``evaluate`` does and keep the model:
        (student, the task's state -- teacher, batches, dev set --, its metrics: held-out ones
        prefixed ``heldout_``, and the dev ones).  Raises on failure."""
        st = self._task(task_name or next(iter(self.state)))
        name = st.task.name
        run = self._train_group(st, [self._canonical(spec)], self.cfg.steps_for(name), report_dev=True)[0]
        if run.status != "ok" or run.student is None:
            raise CandidateFailed(f"{name}: {run.reason}")
        return run.student, st, {k: v for k, v in run.metrics.items() if not k.endswith("_std")}

    def _latency(self, student: ExprBertForSequenceClassification, res: CandidateResult) -> None:
        """``res``'s latency: one inference forward of a ``latency_batch`` x ``latency_len`` batch,
        timed beside the standard-FFN student (built with the evaluator; ``timing.paired_latency``)."""
        from exprsearch.compiler.timing import paired_latency
        if self._reference is None:
            return
        lat = paired_latency(student, self._reference, self.device, self.cfg.latency_batch, self.cfg.latency_len)
        res.latency_ms, res.latency = lat.ms, lat.as_dict()

    def _student(self, st: TaskState, spec: ModelSpec) -> ExprBertForSequenceClassification:
        """The candidate, inheriting the warm supernet: shallower specs keep the layers of the
        LayerDrop every-other rule (or evenly spaced ones); pruned heads are chosen by importance
        on the extracted student when ``head_importance_steps`` > 0, else the first heads are kept."""
        from exprsearch.compiler.layerdrop import every_other
        from exprsearch.compiler.student import layer_map
        n, full = len(spec), self.cfg.layers
        attn = spec.attn or (None,) * n
        if self.cfg.w_attn and any(a is not None for a in attn):
            raise ConfigError("attention-map KD (w_attn > 0) needs standard attention in every layer; "
                              "LSRA and pruned heads have no teacher-shaped attention maps")
        prune = self.cfg.head_importance_steps > 0 and any(a is not None and a.kind == "mha" and a.heads for a in attn)
        # full heads where importance will choose
        build = ModelSpec(spec.layers, tuple(None if prune and a is not None and a.kind == "mha" else a
                                             for a in attn), spec.hidden)
        keep = None
        if n < full:  # the supernet layers a shallower student keeps
            keep = every_other(self.cfg.layerdrop, full) if 0 < self.cfg.layerdrop <= 0.5 else []
            if len(keep) != n:
                keep = sorted(set(layer_map("uniform", n, full)))
        student = to_device(st.supernet.extract(build, keep_layers=keep), self.device).train()
        if prune:
            from exprsearch.compiler.heads import head_importance, keep_top, prune_heads
            kd = KDLoss(st.teacher, student, st.task, self.cfg.kd()).to(self.device)
            imp = head_importance(student, st.train, lambda b: kd(student, b), self.cfg.head_importance_steps)
            prune_heads(student, keep_top(imp, [a.heads if a is not None and a.kind == "mha" and a.heads else None
                                                for a in attn]))
            attach_spec(student, spec)
        if self.cfg.dropout is not None:
            set_dropout(student, self.cfg.dropout)
        return student

    def _task(self, name: str) -> TaskState:
        if name not in self.state:
            raise ConfigError(f"task {name} is not loaded; the evaluator has {', '.join(self.state)}")
        return self.state[name]

    def student(self, task_name: str, spec: ModelSpec) -> ExprBertForSequenceClassification:
        """``spec``'s student for task ``task_name``, inheriting the warm supernet (untrained)."""
        return self._student(self._task(task_name), self._canonical(spec))

    def train(self, loss: Callable[[B], torch.Tensor], params: list[tuple[str, torch.nn.Parameter]],
              batches: Batches[B], steps: int) -> Curve:
        """Train ``params`` on ``loss(batch)`` for ``steps`` steps with this protocol's settings
        (``TrainConfig.from_eval``): the one loop, one model (stage 3's supernets and multi-task
        student).  Raises ``CandidateFailed`` on a broken step."""
        return train_one(loss, params, batches, TrainConfig.from_eval(self.cfg, steps=steps, log_every=max(1, steps // 5)),
                         self.device, log=self.log)

    def trainer(self, members: list[Member], tc: TrainConfig, graphs: bool | None = None,
                log: Callable[[str], None] | None = None) -> GroupTrainer:
        """The lock-step trainer of ``members`` (their KD losses share one teacher forward per
        batch) with this evaluator's device, streams and CUDA-graph setting."""
        kd0 = members[0].loss
        if not isinstance(kd0, KDLoss):
            raise TypeError("the evaluator's groups learn by KD: members of Evaluator.members")
        return GroupTrainer(members, tc, self.device, shared=kd0.teacher_outputs if kd0.needs_teacher else None,
                            graphs=self.graphs if graphs is None else graphs, streams=self.cfg.streams,
                            log=log or self.log)

    def members(self, st: TaskState, specs: list[ModelSpec], seed: int | None = None) -> list[Member]:
        """``specs`` as members of a group (student + its KD loss), each started from ``seed``
        (default ``cfg.seed``): a candidate's start does not depend on its group."""
        out = []
        for spec in specs:
            torch.manual_seed(self.cfg.seed if seed is None else seed)
            student = self._student(st, spec)
            kd = KDLoss(st.teacher, student, st.task, self.cfg.kd()).to(self.device)
            out.append(Member(student, kd, list(kd.named_parameters())))
        return out

    def _train_group(self, st: TaskState, specs: list[ModelSpec], steps: int, seed: int | None = None,
                     graphs: bool | None = None, report_dev: bool = False) -> list["_Run"]:
        """Train ``specs`` together on one task.  Out of memory halves the group (for good) and
        retries; a lone candidate is retried without CUDA graphs, then fails.  Another candidate
        error that breaks the whole group (a forward that raises) is retried one candidate at a
        time, so only the culprit fails; anything else propagates."""
        seed = self.cfg.seed if seed is None else seed
        graphs = self.graphs if graphs is None else graphs
        try:
            return self._train_together(st, specs, steps, seed, graphs, report_dev)
        except Exception as err:  # noqa: BLE001 - the candidates', or re-raised
            why, oom = _candidates(err), is_oom(err)
        # outside the except block: its traceback no longer holds the failed group's tensors
        self._free()
        if oom and len(specs) > 1:
            half = (len(specs) + 1) // 2
            if half < self.group:
                self.log(f"out of memory training {len(specs)} candidates at once ({why}): "
                         f"groups of {half} from now on")
                self._group_size = half
            return [r for i in range(0, len(specs), half)
                    for r in self._train_group(st, specs[i:i + half], steps, seed, graphs, report_dev)]
        if oom and graphs:
            self.log("out of memory for one candidate with CUDA graphs: retrying it without")
            return self._train_group(st, specs, steps, seed, False, report_dev)
        if len(specs) == 1:
            return [_Run("failed", why)]
        return [run for spec in specs for run in self._train_group(st, [spec], steps, seed, graphs, report_dev)]

    def _train_together(self, st: TaskState, specs: list[ModelSpec], steps: int, seed: int, graphs: bool,
                        report_dev: bool = False) -> list["_Run"]:
        cfg = self.cfg
        runs: list[_Run | None] = [None] * len(specs)
        members, index = [], []
        st.supernet.use(4, 1)
        st.train.seed = seed  # every candidate sees the same batches in the same order (head importance too)
        for i, spec in enumerate(specs):
            try:
                members += self.members(st, [spec], seed)
            except Exception as err:  # noqa: BLE001 - the candidate's, or re-raised
                if is_oom(err):
                    raise  # the group's other students took the memory: the group shrinks
                runs[i] = _Run("failed", _candidates(err))
                continue
            index.append(i)
        if members:
            # a re-evaluation with another seed (a re-rank) runs to the end and leaves the bars alone
            rescore = seed != cfg.seed
            hurdle_steps = [] if rescore else sorted({max(1, int(f * steps)) for f in cfg.hurdles})
            log_every = min([steps] + hurdle_steps) if hurdle_steps else max(1, steps // 10)
            tc = TrainConfig.from_eval(cfg, steps=steps, seed=seed, log_every=log_every)
            seen: dict[int, list[float]] = {}  # this group's losses at each hurdle, kept once it succeeds

            def hurdle(step: int, means: dict[int, float]) -> dict[int, str]:
                """Stop members whose loss is above the quantile of earlier candidates' at a hurdle."""
                stop: dict[int, str] = {}
                for h in hurdle_steps:
                    if step >= h and h not in seen:
                        earlier = st.losses.get(h, [])
                        bar = _quantile(earlier, cfg.hurdle_quantile) if len(earlier) >= 3 else None
                        for k, loss in means.items():
                            if bar is not None and loss > bar:
                                stop[k] = f"hurdle at step {h}: loss {loss:.4g} > {bar:.4g}"
                        seen[h] = list(means.values())
                return stop

            trainer = self.trainer(members, tc, graphs)
            outs = trainer.train(st.train, on_log=hurdle if hurdle_steps else None)
            for h, losses in seen.items():
                st.losses.setdefault(h, []).extend(losses)
            for i, m, o in zip(index, members, outs):
                # the members' models are the students self.members built
                runs[i] = self._outcome(st, cast(ExprBertForSequenceClassification, m.model), o, steps, report_dev)
            del trainer, members
            self._free()
        return [r for r in runs if r is not None]

    def _outcome(self, st: TaskState, model: ExprBertForSequenceClassification, o: Outcome, steps: int,
                 report_dev: bool = False) -> "_Run":
        """One member's result: failed, stopped, or its metrics (an error there is its own)."""
        if o.failed is not None:
            return _Run("failed", str(o.failed))
        if o.stopped is not None:
            return _Run("stopped", o.stopped, curve=o.curve)
        try:
            metrics = st.selection_metrics(self.cfg, model, self.device)
            if report_dev and "score" in metrics:
                metrics.update(dev_metrics(model, st.dev, st.task, self.device, std=True))
        except Exception as err:  # noqa: BLE001 - the candidate's, or re-raised
            return _Run("failed", f"scoring: {_candidates(err)}")
        o.curve.dev.append((steps, metrics["score"] if "score" in metrics else metrics[st.task.main]))
        return _Run("ok", metrics=metrics, curve=o.curve, student=model)

    def _free(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


@dataclass
class _Run:
    """One candidate on one task: status, reason, dev metrics, learning curve, trained student."""

    status: str
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    curve: Curve | None = None
    student: ExprBertForSequenceClassification | None = None


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


