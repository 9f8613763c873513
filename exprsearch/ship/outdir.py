"""``distill -o DIR`` --> the output directories checked and reserved before any training.

Input: the output directory, the tasks (one subdirectory each when there are several),
``--overwrite`` and about how many bytes the students will take.  Output: a ``Reservation`` -- a
``.NAME.lock`` file holding this process's id beside each target -- released when the command
ends.  Invariants: whatever would stop the final write is a ConfigError before the first training
step -- a target that exists (without ``--overwrite``; with it, one that is no student exprsearch
wrote: a user's folder is never replaced), a name the file system refuses, a folder
that cannot be written, too little free space, another distill writing the same target -- and
what a killed distill left (``.NAME.tmp-PID`` and ``.NAME.old-PID`` folders, a ``.NAME.lock``
of a process that is gone) is removed.  ``ship/distill.py`` writes each target aside and renames
it into place (``.NAME.tmp-PID``), so a target appears whole or not at all.

>>> import tempfile
>>> out = Path(tempfile.mkdtemp()) / "student"
>>> with reserve(out, ["SST-2"], overwrite=False) as r:
...     sorted(p.name for p in out.parent.iterdir())
['.student.lock']
>>> list(out.parent.iterdir())
[]
"""
from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path
from typing import Any

from exprsearch.errors import ConfigError

__all__ = ["reserve", "targets", "Reservation", "no_space", "ours"]

NAME_MAX = 255   # bytes in one path component (Linux, macOS)
PATH_MAX = 4096  # bytes in a path
_AFFIX = len(".tmp-4194304") + 1  # what the aside names add to a target's name


def targets(out: Path, tasks: list[str]) -> list[Path]:
    """Where each task's student goes: ``out`` for one task, ``out/<task>`` for several."""
    return [out / t for t in tasks] if len(tasks) > 1 else [out]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _pid(name: str) -> int | None:
    tail = name.rpartition("-")[2]
    return int(tail) if tail.isdigit() else None


class Reservation:
    """The lock files of reserved targets; ``release`` (or leaving the ``with``) removes them."""

    def __init__(self, locks: list[Path]) -> None:
        self.locks = locks

    def release(self) -> None:
        for lock in self.locks:
            try:
                lock.unlink()
            except FileNotFoundError:
                pass
        self.locks = []

    def __enter__(self) -> "Reservation":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _sweep(target: Path) -> None:
    """Remove what a killed distill left beside ``target`` (its process is gone)."""
    for p in target.parent.glob(f".{glob.escape(target.name)}.*-*"):
        kind = p.name[len(target.name) + 2:].rpartition("-")[0]
        pid = _pid(p.name)
        if kind in ("tmp", "old") and pid is not None and pid != os.getpid() and not _alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def _lock(target: Path) -> Path:
    lock = target.parent / f".{target.name}.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise ConfigError(f"another exprsearch distill (process {pid}) is writing {target}; wait for it "
                                  f"or choose another -o") from None
            lock.unlink(missing_ok=True)  # left by a process that is gone
            continue
        except OSError as err:
            raise ConfigError(f"cannot write in {target.parent}: {err.strerror or err}") from None
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return lock
    raise ConfigError(f"cannot reserve {target}: {lock} keeps coming back")


def ours(target: Path) -> bool:
    """Is ``target`` a directory ``distill`` wrote (so ``--overwrite`` may replace it whole)?

    >>> import tempfile, json
    >>> d = Path(tempfile.mkdtemp())
    >>> ours(d)
    False
    >>> _ = (d / "config.json").write_text(json.dumps({"model_type": "exprbert"}))
    >>> ours(d)
    True
    """
    import json
    try:
        info = json.loads((target / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return target.is_dir() and not target.is_symlink() and isinstance(info, dict) \
        and info.get("model_type") == "exprbert"


def reserve(out: Path, tasks: list[str], overwrite: bool, need_bytes: int = 0) -> Reservation:
    """Check and reserve the targets of ``distill`` (see the module docstring)."""
    outs = targets(Path(out), tasks)
    for t in outs:
        long = next((part for part in t.parts if len(part.encode()) + _AFFIX > NAME_MAX), None)
        if long is not None or len(str(t.absolute()).encode()) + _AFFIX > PATH_MAX:
            shown = (long or str(t))[:40]
            raise ConfigError(f"-o {shown}...: the name is too long for the file system (a part is at most "
                              f"{NAME_MAX - _AFFIX} bytes here)")
        if (t.exists() or t.is_symlink()) and not overwrite:
            raise ConfigError(f"{t} exists: choose another -o, or pass --overwrite")
        if t.exists() and overwrite and not ours(t):
            raise ConfigError(f"{t} is not a student exprsearch wrote (no config.json of model_type exprbert in "
                              "it): --overwrite replaces only those; choose another -o")
    locks: list[Path] = []
    try:
        for t in outs:
            try:
                t.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise ConfigError(f"cannot create {t.parent}: {err.strerror or err}") from None
            _sweep(t)
            locks.append(_lock(t))
        free = shutil.disk_usage(outs[0].parent).free
        if need_bytes and free < need_bytes:
            raise ConfigError(f"{outs[0].parent}: {free / 1e6:,.0f} MB free, and the student"
                              f"{'s' if len(outs) > 1 else ''} need about {need_bytes / 1e6:,.0f} MB "
                              f"(weights and ONNX): free some space or choose another -o")
    except BaseException:
        Reservation(locks).release()
        raise
    return Reservation(locks)


def no_space(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is a full disk (errno ENOSPC, or safetensors' text of it)."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if getattr(e, "errno", None) == 28 or "No space left on device" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False
