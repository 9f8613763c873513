"""a search's process --> its run's status: a SIGTERM stops a run as Ctrl-C does, and a run whose
process is gone reads as such.

Input: the running search (``sigterm_as_interrupt`` while its loop runs, ``owner()`` stored as
the running run's note) and, later, a stored run's status and note.  Output: ``Terminated`` (a
``KeyboardInterrupt``: the run is marked ``interrupted``, its workers closed) when the process gets
SIGTERM, and ``shown``: the status ``show`` prints -- ``died`` for a run still marked ``running``
whose process, on this machine, no longer exists (``kill -9``, out of memory, a power cut).
Invariant: a run on another machine, or of a version that stored no owner, keeps its stored status
(nothing is guessed).

>>> shown("running", owner())            # this process runs it
('running', 'pid ...')
>>> shown("running", f"pid {2**22 + 1} on {socket.gethostname()}")[0]
'died'
>>> shown("running", "pid 1 on another-host"), shown("done", "")
(('running', 'pid 1 on another-host'), ('done', ''))
"""
from __future__ import annotations

import os
import re
import signal
import socket
import threading
from pathlib import Path
from typing import Callable

__all__ = ["Terminated", "sigterm_as_interrupt", "owner", "shown"]


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM (``kill PID``, a scheduler's time limit): stopped like Ctrl-C."""


def sigterm_as_interrupt() -> Callable[[], None]:
    """From now on SIGTERM raises ``Terminated`` in the main thread (elsewhere, where no handler
    can be installed, nothing changes); call the function returned to restore the previous handler.

    >>> restore = sigterm_as_interrupt()
    >>> try:
    ...     os.kill(os.getpid(), signal.SIGTERM)
    ... except Terminated as err:
    ...     print(err)
    stopped by SIGTERM
    >>> restore()
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: object) -> None:
        raise Terminated("stopped by SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def owner() -> str:
    """The note a running run keeps: which process on which machine runs it."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process of that id
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:  # a zombie (ended, not yet reaped by its parent) has ended
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def shown(status: str, notes: str | None) -> tuple[str, str]:
    """(status, why) as ``show`` prints them: a ``running`` run whose process on this machine is
    gone is ``died``, with what to do; anything else as stored."""
    notes = notes or ""
    m = re.fullmatch(r"pid (\d+) on (.+)", notes)
    if status != "running" or m is None or m.group(2) != socket.gethostname() or _alive(int(m.group(1))):
        return status, notes
    return "died", (f"its process ({notes}) ended without a clean stop (kill -9, out of memory, a crash); "
                    f"continue it with exprsearch search --resume")
