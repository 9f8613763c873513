"""GLUE task + protocol --> everything its candidates need: teacher, data, warm supernet (cached).

Input: an ``EvalConfig`` and a task.  Output: a ``TaskState`` -- the fine-tuned teacher (on the
device, bf16 on CUDA), the training batches on the device (static shapes when CUDA graphs are
on), the dev split, and the supernet student warmed up by KD -- each built once per machine and
cached (teacher folders, token tensors, supernet weights).  ``prefill`` prepares several tasks
at once, one process each: at this model size one process cannot keep a GPU busy.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from exprsearch.compiler.execute import to_device
from exprsearch.engine.checkpoint import Checkpoint
from exprsearch.engine.group import train_one
from exprsearch.engine.processes import how_it_ended, pool_processes
from exprsearch.engine.train import Progress, TrainConfig, dev_metrics
from exprsearch.rows.glue import Task
from exprsearch.rows.holdout import task_rows
from exprsearch.rows.tokens import Batch, Batcher, Encoded, encode

from .distill import ExprPool, KDLoss, SupernetStudent
from .protocol import NEUTRAL, EvalConfig, teacher_config
from .teacher import finetune_teacher, load_teacher, load_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from exprsearch.compiler import StudentConfig

__all__ = ["TaskState", "prepare", "student_config", "prefill", "locations", "supernet_path"]


@dataclass
class TaskState:
    task: Task
    teacher: PreTrainedModel
    train: Batcher
    dev: Encoded
    supernet: SupernetStudent
    teacher_metrics: dict[str, float]
    losses: dict[int, list[float]] = field(default_factory=dict)  # hurdle step -> earlier losses
    heldout: Encoded | None = None      # training rows kept out of training (cfg.heldout_rows), on the device
    rows: dict[str, int] = field(default_factory=dict)  # holdout.Rows.counts(): each set's rows, before any cut

    def scored(self, cfg: EvalConfig) -> tuple[Encoded, str]:
        """The split a candidate's score is read from, and its name: the held-out training rows
        where the protocol says so (``score_on``), else the dev set."""
        if self.heldout is not None and cfg.selects_on_heldout:
            return self.heldout, "heldout"
        return self.dev, "dev"

    def selection_metrics(self, cfg: EvalConfig, model: nn.Module, device: torch.device) -> dict[str, float]:
        """The metrics every selection reads, with their bootstrap std: of the held-out rows
        (``heldout_<metric>``, and ``score``: the main one), or of the dev rows where the protocol
        scores on dev (then unprefixed)."""
        split, name = self.scored(cfg)
        m = dev_metrics(model, split, self.task, device, std=True)
        if name == "dev":
            return m
        return {**{f"heldout_{k}": v for k, v in m.items()}, "score": m[self.task.main]}


def prepare(cfg: EvalConfig, t: Task, device: torch.device, data_dir: Path, teacher_dir: Path, cache: Path,
            log: Callable[[str], None]) -> TaskState:
    """Fine-tuned teacher, data and warm supernet of task ``t`` (each from the cache when there)."""
    tcfg = teacher_config(cfg, t.name)
    tdir = finetune_teacher(t, data_dir, teacher_dir, tcfg, cache, device, log)
    info = json.loads((tdir / "exprsearch.json").read_text())
    teacher = to_device(load_teacher(tdir), device).eval()
    if device.type == "cuda" and cfg.bf16_teacher:
        teacher = teacher.to(torch.bfloat16)  # inference only: no per-step autocast casts of its weights
    if cfg.w_attn and not cfg.no_kd:
        teacher.config._attn_implementation = "eager"
    tok = load_tokenizer(tdir)
    rows = task_rows(data_dir, t, heldout_rows=cfg.heldout_rows, max_train=cfg.max_train, max_dev=cfg.max_dev,
                     skip_bad_rows=cfg.skip_bad_rows)  # the teacher's own split (teacher.py reads the same)
    log(f"{t.name}: {rows.describe()}")
    train = encode(rows.train, tok, cfg.max_len, cache)
    dev = encode(rows.dev, tok, cfg.max_len, cache)
    heldout = None if rows.heldout is None else encode(rows.heldout, tok, cfg.max_len, cache)
    graphs = cfg.cuda_graphs and device.type == "cuda"
    batches = Batcher(train, cfg.batch_size, seed=cfg.seed, device=device, fill=True,
                      widths=cfg.bucket_widths if graphs else ())
    sup = _supernet(cfg, t, teacher, tdir, batches, device, cache, log)
    return TaskState(t, teacher, batches, dev.to(device), sup, info["dev"],
                     heldout=None if heldout is None else heldout.to(device), rows=rows.counts())


def student_config(cfg: EvalConfig, teacher: PreTrainedModel, num_labels: int) -> StudentConfig:
    """The student shape: the teacher's width, heads, vocabulary (any BERT-family teacher, read
    under BERT's names: ``compiler.teachers.teacher_shape``); the protocol's depth and D."""
    from exprsearch.compiler import StudentConfig
    from exprsearch.compiler.teachers import teacher_shape
    tc = teacher_shape(teacher.config.to_dict())
    return StudentConfig(layers=cfg.layers, hidden=tc["hidden_size"], heads=tc["num_attention_heads"],
                         base_width=cfg.base_width, num_labels=num_labels,
                         dropout=tc["hidden_dropout_prob"], vocab_size=tc["vocab_size"],
                         max_position=tc["max_position_embeddings"], type_vocab=tc["type_vocab_size"],
                         layer_map=cfg.layer_map)


def _supernet(cfg: EvalConfig, t: Task, teacher: PreTrainedModel, tdir: Path, batches: Batcher, device: torch.device,
              cache: Path,              log: Callable[[str], None]) -> SupernetStudent:
    """The supernet student, warmed up by KD with a uniformly drawn (X, Y) sub-model per step."""
    torch.manual_seed(cfg.seed)
    sup = SupernetStudent(student_config(cfg, teacher, t.num_labels), teacher).to(device)
    if cfg.w_attn and not cfg.no_kd:
        sup.model.config._attn_implementation = "eager"
    if cfg.warmup_steps <= 0:
        return sup
    path = supernet_path(cfg, t, tdir, cache)
    if path.is_file():
        sup.load_state_dict(torch.load(path, map_location=device, weights_only=True), strict=False)
        return sup
    space = cfg.warmup_sampling == "space"
    log(f"warming up the supernet student on {t.name}: {cfg.warmup_steps} KD steps"
        + (", a random expression of the space per layer per step" if space else ""))
    t0 = time.perf_counter()
    kd = KDLoss(teacher, sup.model, t, replace(cfg.kd(), w_task=0.0) if not cfg.no_kd else cfg.kd()).to(device)
    rng = random.Random(cfg.seed)
    pool = None
    if space:
        from exprsearch.space.generate import Space
        pool = ExprPool(random.Random(cfg.seed + 1), space=Space.from_text(cfg.warmup_space))

    def loss(batch: Batch) -> torch.Tensor:
        sup.sample(rng, cfg.layerdrop, pool)  # a uniform (X, Y) sub-model (and layer skips) per step
        return kd(sup.model, batch)

    ckpt = Checkpoint(path.with_suffix(".partial.pt"), [rng], log=log)
    train_one(loss, sup.trainable() + list(kd.named_parameters()), batches,  # a stopped warm-up goes on from
              TrainConfig.from_eval(cfg, steps=cfg.warmup_steps), device,  # its last checkpoint
              on_log=Progress(log, f"warm-up {t.name}", cfg.warmup_steps), checkpoint=ckpt)
    sup.use(4, 1)
    if cfg.layerdrop:
        from exprsearch.compiler.layerdrop import set_skips
        set_skips(sup.model, set())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(sup.state_dict(), tmp)
    os.replace(tmp, path)
    ckpt.done()
    log(f"supernet warm-up on {t.name} took {time.perf_counter() - t0:.1f}s")
    return sup


def supernet_path(cfg: EvalConfig, t: Task, tdir: Path, cache: Path) -> Path:
    """The cache file of task ``t``'s warm supernet under protocol ``cfg`` (``tdir``: its fine-tuned
    teacher's folder, whose name keys the teacher, the data and the held-out split): a run and the
    same run resumed find the same file."""
    recipe = [tdir.name, t.name, cfg.layers, cfg.base_width, cfg.warmup_steps, cfg.batch_size, cfg.lr, cfg.max_len,
              cfg.max_train, cfg.seed, cfg.layerdrop, asdict(cfg.kd()), "v2"]
    recipe += [f"{k}={getattr(cfg, k)}" for k in ("warmup_sampling", "heldout_rows", "warmup_space")  # new fields:
               if getattr(cfg, k) != NEUTRAL[k]]                              # only when set (old caches stay valid)
    if cfg.warmup_sampling == "space":
        recipe.append("pool-v2")  # standard FFN drawn per layer, the pool from the search's space
    key = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:20]
    return cache / "supernets" / f"{t.name}-{key}.pt"


def prefill(cfg: EvalConfig, log: Callable[[str], None] = print) -> None:
    """Prepare every task of ``cfg`` at once, one process each (``cfg.setup_workers``; 0: one per
    task on CUDA, none on the CPU), so that the caches are warm before the caller loads them."""
    cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
    workers = cfg.setup_workers or (len(cfg.tasks) if cuda else 1)
    if workers <= 1 or len(cfg.tasks) <= 1:
        return
    log(f"preparing {len(cfg.tasks)} tasks in {min(workers, len(cfg.tasks))} processes")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(min(workers, len(cfg.tasks)), mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_prepare_one, replace(cfg, tasks=(t,), setup_workers=1)) for t in cfg.tasks]
        procs = pool_processes(pool)
        try:
            for fut in as_completed(futures):
                name, seconds = fut.result()
                log(f"{name} ready ({seconds:.0f}s)")
        except BrokenProcessPool:  # a dead worker must not hang the search: say how it died, go on here
            log(f"a task-preparation process {how_it_ended(procs)}: the rest is prepared in this process")
    log(f"tasks prepared in {time.perf_counter() - t0:.0f}s")


def locations(cfg: EvalConfig) -> tuple[Path, Path, Path]:
    """(GLUE data folder, teacher directory, cache folder) a protocol names, defaults resolved."""
    from exprsearch.rows.paths import cache_root, resolve_data_dir
    from .teacher import default_teacher_dir
    return (resolve_data_dir(cfg.data_dir), Path(cfg.teacher) if cfg.teacher else default_teacher_dir(),
            cache_root(cfg.cache_dir))


def _prepare_one(cfg: EvalConfig) -> tuple[str, float]:
    from exprsearch.rows.glue import task
    t0 = time.perf_counter()
    name = cfg.tasks[0]
    data_dir, teacher_dir, cache = locations(cfg)
    prepare(cfg, task(name), cfg.torch_device(), data_dir, teacher_dir, cache,
            lambda m: print(f"[{name}] {m}", file=sys.stderr, flush=True))
    return name, time.perf_counter() - t0
