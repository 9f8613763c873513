"""command-line options --> one ConfigError before any work starts.

Input: the configs a command built from its options (``EvalConfig``, ``SearchConfig``,
``FinalConfig``, ``ExitConfig``, ``Space``) and its own plain options.  Output: nothing, or the
first bad option's ``ConfigError``.  The configs check their ranges when they are built; this
adds what only a command knows -- upper bounds (``--teacher-epochs 1e300`` trains for ever,
``--steps 10**20`` never ends), per-task values (``--task-steps RTE=nan``), budgets that must be
finite and positive, task names that become file names -- so a bad value is refused in a second,
not after minutes of training.  Invariant: every handler calls its checks before it opens a
store, reads data or trains.

>>> check_task_names(["RTE", "my_reviews-2"])
>>> check_task_names(["../../X"])
Traceback (most recent call last):
...
exprsearch.errors.ConfigError: task name '../../X': use letters, digits and . _ - (at most 64, not starting with . or -); it names files and directories
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import TYPE_CHECKING, Any, Iterable

from exprsearch.errors import ConfigError, check_number, check_whole

if TYPE_CHECKING:
    from exprsearch.kd.exits import ExitConfig
    from exprsearch.kd.final import FinalConfig
    from exprsearch.kd.protocol import EvalConfig
    from exprsearch.search.config import SearchConfig
    from exprsearch.space.generate import Space

__all__ = ["check_task_names", "check_per_task", "check_eval", "check_search", "check_final", "check_exits",
           "check_space", "check_stored", "check_count", "MAX_STEPS", "MAX_EPOCHS", "MAX_SEEDS"]

MAX_STEPS = 10_000_000      # training steps of anything (a GPU does ~10 steps/s at the GLUE budgets: 11 days)
MAX_EPOCHS = 1_000.0        # passes over a training set
MAX_SEEDS = 1_000           # training seeds of one distill
MAX_CANDIDATES = 1_000_000  # candidates of one search stage
MAX_BATCH = 65_536          # examples in one batch
MAX_WORKERS = 1_024         # processes, actors, candidates in lock-step
MAX_DEPTH, MAX_SIZE = 32, 64  # a search space's trees (the counting tables grow as depth x size^2)
_TASK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_task_names(names: Iterable[str]) -> None:
    """Task names are used as file and directory names (teacher caches, ``-o DIR/<task>``): only
    letters, digits and ``. _ -``, at most 64 characters, never a path."""
    for name in names:
        if not _TASK.fullmatch(name) or name in (".", ".."):
            shown = name if len(name) <= 40 else name[:37] + "..."
            raise ConfigError(f"task name {shown!r}: use letters, digits and . _ - (at most 64, not starting "
                              f"with . or -); it names files and directories")


def check_per_task(option: str, text: str, *, whole: bool, most: float) -> None:
    """``TASK=NUMBER,...`` with every number finite, > 0 and at most ``most`` (whole if ``whole``).

    >>> check_per_task("task_steps", "RTE=nan", whole=True, most=10)
    Traceback (most recent call last):
    ...
    exprsearch.errors.ConfigError: task_steps: 'RTE=nan' needs a whole number from 1 to 10
    """
    for item in filter(None, (p.strip() for p in (text or "").split(","))):
        name, eq, value = item.partition("=")
        try:
            v = float(value)
        except ValueError:
            v = math.nan
        if not eq or not name.strip() or not (math.isfinite(v) and 0 < v <= most) or (whole and v != int(v)):
            what = f"a whole number from 1 to {most:,.0f}" if whole else f"a number > 0 and at most {most:g}"
            raise ConfigError(f"{option}: {item!r} needs {what}")


def _most(cfg: object, most: float, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > most:
                raise ConfigError(f"{name} must be at most {most:,.0f}, got {v!r}" if most == int(most) else
                                  f"{name} must be at most {most:g}, got {v!r}")


def check_count(name: str, value: int | float | None, least: int, most: int) -> None:
    """A plain whole-number option of a command (``--top``, ``--seeds``)."""
    from types import SimpleNamespace
    check_whole(SimpleNamespace(**{name: value}), name, least=least, most=most)


def check_eval(cfg: EvalConfig) -> None:
    """An ``EvalConfig`` (every command that trains): names, upper bounds, per-task values."""
    check_task_names(cfg.tasks)
    _most(cfg, MAX_STEPS, "steps", "warmup_steps", "head_importance_steps")
    _most(cfg, MAX_EPOCHS, "teacher_epochs")
    _most(cfg, MAX_BATCH, "batch_size", "teacher_batch", "latency_batch")
    _most(cfg, MAX_WORKERS, "group", "setup_workers")
    _most(cfg, 10.0, "lr")
    _most(cfg, 1_000.0, "temperature")
    _most(cfg, 1e6, "w_logits", "w_hidden", "w_attn")
    check_per_task("task_steps", cfg.task_steps, whole=True, most=MAX_STEPS)
    check_per_task("teacher_task_epochs", cfg.teacher_task_epochs, whole=False, most=MAX_EPOCHS)


def _budget(option: str, text: str) -> None:
    from exprsearch.search.pricing import Budget, parse_budget
    if not text:
        return
    if option == "budget_flops":
        values = [parse_budget(text)]
    else:
        b = Budget.parse(text)
        values = [] if b is None or b.standard else [b.count if b.count is not None else b.share]
    if any(v is None or not math.isfinite(v) or v <= 0 for v in values):
        raise ConfigError(f"{option.replace('_', '-')} {text!r}: a budget is a finite positive number, e.g. 20M")


def check_search(scfg: SearchConfig) -> None:
    """A ``SearchConfig``: stages named, budgets finite and positive, upper bounds."""
    if not [x for x in scfg.stages.split(",") if x.strip()]:
        raise ConfigError("stages '': name the stages to run, e.g. 1,2,3")
    _budget("budget_params", scfg.budget_params)
    _budget("budget_flops", scfg.budget_flops)
    check_number(scfg, "gpus_per_worker", least=0, most=64)
    _most(scfg, MAX_CANDIDATES, "candidates", "stage2_candidates", "stage3_candidates", "population", "tournament")
    _most(scfg, MAX_STEPS, "supernet_steps", "multitask_steps")
    _most(scfg, MAX_WORKERS, "workers", "batch")
    _most(scfg, 10_000, "rerank")
    _most(scfg, MAX_SEEDS, "rerank_seeds")
    check_whole(scfg, "seed", least=0, most=2**32 - 1)
    check_space(scfg)


def check_space(sp: Space | SearchConfig) -> None:
    """Depth and size of a space's trees (``Space`` or ``SearchConfig``)."""
    _most(sp, MAX_DEPTH, "max_depth")
    _most(sp, MAX_SIZE, "max_size")


def check_final(fcfg: FinalConfig, seeds: int) -> None:
    """``distill``'s final protocol and ``--seeds``."""
    check_count("seeds", seeds, 1, MAX_SEEDS)
    check_number(fcfg, "epochs", above=0, most=MAX_EPOCHS)
    check_whole(fcfg, "eval_every", least=1, most=MAX_STEPS)
    check_number(fcfg, "dropout", least=0, below=1)
    check_per_task("task_epochs", fcfg.task_epochs, whole=False, most=MAX_EPOCHS)


def check_exits(xcfg: ExitConfig) -> None:
    """``exits``: step counts and rates bounded."""
    _most(xcfg, MAX_STEPS, "exit_steps", "gate_steps")
    _most(xcfg, 10.0, "exit_lr", "backbone_lr", "gate_lr")
    _most(xcfg, 1_000.0, "exit_temperature", "exit_label_weight", "gate_cost", "threshold", "tolerance")
    _most(xcfg, 1_000_000, "timing_rows", "patience")


def _fits(v: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        return any(_fits(v, a) for a in typing.get_args(tp))
    if tp is type(None):
        return v is None
    if origin is tuple:
        elem = typing.get_args(tp)[0]
        return isinstance(v, (list, tuple)) and all(_fits(x, elem) for x in v)
    if tp is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, tp) if isinstance(tp, type) else True


def check_stored(cls: type, stored: Any, what: str) -> None:
    """A config stored with a run has the types of ``cls``'s fields (a damaged store: one message).

    >>> from exprsearch.search.search import SearchConfig
    >>> check_stored(SearchConfig, {"stages": 5}, "run r")
    Traceback (most recent call last):
    ...
    exprsearch.errors.ConfigError: run r: its stored config is damaged (SearchConfig.stages is 5)
    """
    if not isinstance(stored, dict):
        raise ConfigError(f"{what}: its stored config is damaged ({cls.__name__} is {type(stored).__name__})")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in stored and not _fits(stored[f.name], hints[f.name]):
            shown = repr(stored[f.name])[:40]
            raise ConfigError(f"{what}: its stored config is damaged ({cls.__name__}.{f.name} is {shown})")
