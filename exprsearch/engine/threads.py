"""this machine's load --> how many CPU threads a training process uses.

Input: an asked-for thread count (0: choose), the number of processes that will train side by
side, and the machine (its usable cores, what other processes keep busy).  Output: ``Threads``:
the count per process and why.  Why it matters: an intra-op thread pool that spans a core another
process holds waits for its slowest thread at every parallel region, so on a 2-core machine with
one busy neighbour two threads ran a training step 4-8x slower than one (issue 32;
BENCHMARKS.md, "Threads").  Rules, in order: ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` /
``EXPRSEARCH_THREADS`` in the environment win; then an explicit count; else the cores other
processes of at least our priority leave free (measured from ``/proc/stat`` over a fraction of a
second; niced neighbours yield their cores), split among the processes -- never more threads in
all than usable cores, never fewer than one per process.

>>> pick(requested=3, workers=1, cores=8, busy=0.0, env={}).count
3
>>> pick(workers=1, cores=2, busy=1.0, env={}).count   # one core held by another process
1
>>> pick(workers=2, cores=8, busy=0.0, env={}).count    # two workers share the free cores
4
>>> pick(workers=1, cores=2, busy=0.0, env={"OMP_NUM_THREADS": "2"}).why
'OMP_NUM_THREADS=2 in the environment'
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Mapping

__all__ = ["Threads", "pick", "usable_cores", "busy_elsewhere", "apply", "ENV_VARS"]

ENV_VARS = ("EXPRSEARCH_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Threads:
    count: int   # intra-op threads of each training process
    why: str     # one line for the log


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _jiffies() -> tuple[float, float, float] | None:
    """(busy, total, niced) jiffies of all CPUs since boot, from /proc/stat (None where there is
    none); ``niced`` is the share of ``busy`` spent in processes with a positive nice value."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields), fields[1]


def busy_elsewhere(window: float = 0.3, niced: bool | None = None) -> float:
    """Cores kept busy by other processes over ``window`` seconds (this process's own CPU time
    subtracted); 0.0 where /proc/stat cannot be read.  Time of niced processes counts only where
    this process is niced itself (``niced``; default: ``os.nice(0) > 0``): at nice 10 a process
    gets about a tenth of a core beside one at nice 0, so a niced neighbour leaves the cores to us
    (BENCHMARKS.md, "Threads": two threads beside one stayed 1.2x faster than one thread)."""
    niced = (os.nice(0) > 0) if niced is None else niced
    a, own0, t0 = _jiffies(), time.process_time(), time.monotonic()
    if a is None:
        return 0.0
    time.sleep(window)
    b, own1, t1 = _jiffies(), time.process_time(), time.monotonic()
    if b is None or b[1] <= a[1]:
        return 0.0
    cores = os.cpu_count() or 1
    counted = (b[0] - a[0]) - (0.0 if niced else b[2] - a[2])
    busy_cores = counted / (b[1] - a[1]) * cores  # all processes
    return max(0.0, busy_cores - (own1 - own0) / max(1e-9, t1 - t0))


def pick(requested: int = 0, workers: int = 1, *, cores: int | None = None, busy: float | None = None,
         env: Mapping[str, str] | None = None) -> Threads:
    """The thread count of each of ``workers`` training processes (see the module docstring)."""
    env = os.environ if env is None else env
    for var in ENV_VARS:
        value = env.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return Threads(int(value), f"{var}={value} in the environment")
    workers = max(1, workers)
    cores = usable_cores() if cores is None else cores
    if requested > 0:
        count = max(1, min(requested, cores // workers)) if workers > 1 else requested
        return Threads(count, f"--threads {requested}" + (f", {workers} workers" if workers > 1 else ""))
    busy = busy_elsewhere() if busy is None else busy
    free = max(1, int(cores - busy + 0.5))
    count = max(1, free // workers)
    return Threads(count, f"{cores} usable cores, {busy:.1f} busy with other processes"
                   + (f", {workers} workers" if workers > 1 else "") + " (--threads N to pin it)")


def apply(requested: int = 0, workers: int = 1) -> Threads:
    """Choose (``pick``) and set torch's intra-op thread count in this process."""
    import torch
    t = pick(requested, workers)
    torch.set_num_threads(t.count)
    return t
