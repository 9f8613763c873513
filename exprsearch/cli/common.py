"""what the evaluation commands share: the spec argument (text or file), the evaluation options
and presets, and the log.  Text becomes a ``ModelSpec`` here, at the edge."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from exprsearch.errors import ConfigError, ExprSearchError
from exprsearch.lang.expr import ModelSpec
from exprsearch.lang.parsing import parse_spec
from exprsearch.search.presets import EVAL_PRESETS

from .checks import check_eval, check_task_names
from .options import add_dataclass_args, from_args

if TYPE_CHECKING:
    from exprsearch.search.store import Store

__all__ = ["as_file", "spec_text", "read_spec_arg", "add_eval_options", "eval_config", "logger", "resolve_run",
           "task_options"]


def run_best(store: Store | None, target: str, what: str, trained_only: bool = False
             ) -> tuple[dict[str, Any], str] | None:
    """(best successful row, run id) when ``target`` names a run of ``store`` ('last' = the
    newest), else None (the target is a spec); ``trained_only`` leaves stage 3's supernet-scored
    ('@') rows out.  A run without a successful candidate is a ConfigError saying ``what`` failed."""
    if store is None or not (target == "last" or store.has_run(target)):
        return None
    run = resolve_run(store, target)
    ok = [r for r in store.candidates(run, status="ok")
          if r["score"] is not None and not (trained_only and "@" in r["key"])]
    if not ok:
        raise ConfigError(f"run {run} has no successful candidate to {what}")
    return max(ok, key=lambda r: r["score"]), run


def resolve_run(store: Store, name: str) -> str:
    """A run named on the command line: ``last`` is the newest run of ``store``; any other name
    must be one of its runs (``StoreError`` otherwise, listing recent ones)."""
    run = store.latest_run() if name == "last" else name
    store.run(run)  # raises for an unknown run
    return run

_MAX_PATH = 4096  # longer arguments are never file names (Linux's PATH_MAX)


def as_file(arg: str) -> Path | None:
    """The file a command-line argument names, or None when it is no existing file (inline text:
    an expression or ``[e1; e2; ...]``).  Only a plausible path is asked about, and a file system
    that refuses the name (too long, a component over 255 bytes, a NUL) means "not a file"."""
    if not arg or len(arg) >= _MAX_PATH or "\n" in arg:
        return None
    p = Path(arg)
    try:
        return p if p.is_file() else None
    except (OSError, ValueError):
        return None


def spec_text(text: str) -> str:
    """The spec a command-line argument gives: the file's contents if it names a file, else itself."""
    p = as_file(text)
    if p is not None:
        try:
            return p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ExprSearchError(f"cannot read {p}: {err}") from None
    return text


def read_spec_arg(text: str) -> ModelSpec:
    """A spec argument (expression, ``[e1; e2; ...]`` or a file) parsed."""
    return parse_spec(spec_text(text))


def add_eval_options(p: argparse.ArgumentParser) -> None:
    """--task, --preset and one option per ``EvalConfig`` field."""
    from exprsearch.kd.protocol import EvalConfig
    p.add_argument("--task", "--tasks", dest="task", help="GLUE task(s), comma-separated, e.g. RTE or RTE,MRPC; "
                   "with --train FILE: your data's name (default: the file's stem without a split word: "
                   "reviews_train.csv is reviews)")
    p.add_argument("--preset", choices=sorted(EVAL_PRESETS),
                   help="a bundle of settings (explicit options win; default: none)")
    add_dataclass_args(p, EvalConfig, skip=("tasks",))


def eval_config(ns: argparse.Namespace, stored: dict[str, Any] | None = None):
    """The ``EvalConfig`` of the options given, over ``stored`` (a stored run's protocol: its tasks,
    data, teacher, held-out rows, warm-up -- so its caches are reused), else over the preset, over
    the defaults."""
    import dataclasses

    from exprsearch.kd.protocol import EvalConfig
    if stored is not None:
        base = dataclasses.asdict(EvalConfig.from_stored(stored))
    else:
        base = EVAL_PRESETS.get(ns.preset, {}) if ns.preset else {}
    given = {k: v for k, v in base.items() if not hasattr(ns, k)} | task_options(ns, ns.task)  # --task wins
    cfg = from_args(EvalConfig, ns, **given)
    check_eval(cfg)  # upper bounds, per-task values: before anything is read or trained
    cfg.torch_device()  # --device cuda without CUDA: an error now, not after the data is read
    cfg.check_data()  # a bad data file: one message before anything is trained or stored
    return cfg


def task_options(ns: argparse.Namespace, names: str | None) -> dict[str, Any]:
    """The tasks the options name (over a preset's), and your own data's files made absolute (so
    worker processes and ``--resume`` find them): ``--train FILE`` alone is the task named after
    the file's stem (``data_name``).

    >>> task_options(argparse.Namespace(train_file="data/reviews_train.csv"), None)["tasks"]
    ('reviews',)
    >>> task_options(argparse.Namespace(train_file="data/my reviews (2024).csv"), None)["tasks"]
    ('my_reviews__2024_',)
    """
    out: dict[str, Any] = {}
    if names:
        out["tasks"] = tuple(t.strip() for t in names.split(",") if t.strip())
    for name in ("train_file", "dev_file"):
        if getattr(ns, name, None):
            out[name] = str(Path(getattr(ns, name)).expanduser().absolute())
    if "train_file" in out and "tasks" not in out:  # the file's stem, as a name that is never a path
        stem = data_name(Path(out["train_file"]))
        out["tasks"] = (re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip(".-")[:64] or "data",)
    check_task_names(out.get("tasks", ()))  # names become file names: never a path
    return out


def data_name(path: Path) -> str:
    """The task name a training file gives: its stem without a split word (``qnli_train.jsonl``
    is ``qnli``, not ``qnli_train``: the name titles the model card).

    >>> data_name(Path("qnli_train.jsonl")), data_name(Path("train-reviews.csv")), data_name(Path("reviews.csv"))
    ('qnli', 'reviews', 'reviews')
    >>> data_name(Path("train.csv"))
    'train'
    """
    m = re.fullmatch(r"(?i)(.+?)[._ -]+train(?:ing)?|train(?:ing)?[._ -]+(.+)", path.stem)
    return (m.group(1) or m.group(2)) if m else path.stem


def logger(ns: argparse.Namespace) -> Callable[[str], None]:
    """Progress messages to stderr (none with --quiet)."""
    return (lambda m: print(m, file=sys.stderr)) if not getattr(ns, "quiet", False) else (lambda m: None)
