"""a store's path --> how its SQLite file is opened and, when it cannot be made, cleaned up.

Input: the path of a store.  Output: the URI a read-only command opens it with, and the removal of
a new store that failed to be created.  Invariants: a command that only reads (``show``,
``export``, ``report``) leaves no ``-wal`` or ``-shm`` file beside the store that was not there
before it ran; a new store that could not be created (a full disk) leaves no file behind, and the
message names the disk, not the store.

>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "runs.db")
>>> readonly_uri(p).endswith("?mode=ro&immutable=1")  # no writer: nothing to share with one
True
>>> open(p + "-wal", "w").close()
>>> readonly_uri(p).endswith("?mode=ro")              # a writer's log: read through it
True
"""
from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["readonly_uri", "remove_new", "creation_message", "SIDE_FILES"]

SIDE_FILES = ("-wal", "-shm", "-journal")  # the files SQLite keeps beside a database


def readonly_uri(path: str | Path) -> str:
    """The URI to read ``path`` without writing.  When no ``-wal`` or ``-shm`` is beside it, no
    process is writing it and every commit is in the file: it is opened immutable, so SQLite creates
    no ``-wal``/``-shm`` (a read-only connection cannot remove them again).  Otherwise a writer's
    log may hold commits: it is read through the log, whose files were already there."""
    p = Path(path)
    quiet = not any(Path(f"{p}{s}").exists() for s in ("-wal", "-shm"))
    return p.resolve().as_uri() + ("?mode=ro&immutable=1" if quiet else "?mode=ro")


def remove_new(path: str | Path) -> None:
    """Remove a store this process began to create, and the files SQLite put beside it."""
    for s in ("", *SIDE_FILES):
        try:
            Path(f"{path}{s}").unlink()
        except FileNotFoundError:
            pass


def creation_message(path: str | Path, error: str) -> str:
    """Why a new store could not be made: a full (or failing) disk is named as such."""
    p = Path(path)
    try:
        free = shutil.disk_usage(p.resolve().parent).free
    except OSError:
        free = None
    if free is not None and free < 1 << 20 or "full" in error:
        shown = f"{free / 1024:.0f} kB free" if free is not None else "full"
        return (f"cannot create the store {p}: its disk is full ({shown}; {error}); nothing was left behind -- "
                f"free some space or name another --store")
    return f"cannot create the store {p} ({error}); nothing was left behind"
