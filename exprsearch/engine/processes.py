"""a broken process pool --> why its process ended, in words (for the log and the error).

Input: the ``multiprocessing`` processes of a pool, taken while they ran.  Output: one phrase
saying how the first one that ended on its own ended: killed by a signal (SIGKILL: most often the
OS's out-of-memory killer) or exited with an error code (an exception in the process, e.g. a script
that starts exprsearch without an ``if __name__ == "__main__":`` guard: spawned workers import it
again).  Processes the pool terminated itself (SIGTERM) are passed over.

>>> class P:
...     def __init__(self, code): self.exitcode = code
...     def join(self, timeout=None): pass
>>> how_it_ended([P(-15), P(-9)])
'was killed by signal SIGKILL (the out-of-memory killer?)'
>>> how_it_ended([P(1)])[:31]
'exited with code 1 (an error in'
"""
from __future__ import annotations

import signal
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.process import BaseProcess

__all__ = ["how_it_ended", "pool_processes"]


def pool_processes(pool: ProcessPoolExecutor) -> list[BaseProcess]:
    """The processes of a ``ProcessPoolExecutor`` now (its private table; empty if unknown)."""
    return list((getattr(pool, "_processes", None) or {}).values())


def how_it_ended(procs: list[BaseProcess]) -> str:
    ended = []
    for p in procs:
        p.join(timeout=2)
        if p.exitcode not in (None, 0, -signal.SIGTERM):
            ended.append(p.exitcode)
    if not ended:
        return "ended unexpectedly"
    code = ended[0]
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        return f"was killed by signal {name}" + (" (the out-of-memory killer?)" if -code == signal.SIGKILL else "")
    return (f"exited with code {code} (an error in the process; a script that starts exprsearch must guard its "
            f"work with `if __name__ == \"__main__\":`, as worker processes import it again)")
