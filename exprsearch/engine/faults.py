"""fault plan --> failures raised at named points of training: the test hook of the recovery paths.

Input: a plan, from ``inject(point, times, kind)`` in this process or from the environment variable
``EXPRSEARCH_FAULTS`` (``point:times[:kind]`` items separated by ``,``; inherited by worker
processes).  Output: ``check(point, device)`` raises the planned error the next ``times`` times it
is reached, then never again.  Points: ``capture`` (a length bucket's CUDA-graph capture, reached on
the CPU too where a graph would be captured), ``step`` (a training step of a group).  Kinds:
``oom`` (out of memory: on CUDA a real allocation larger than the card, so the allocator's own
error is raised, inside the capture when the point is there), ``device`` (a CUDA error that
poisons the device), ``bug`` (a ``TypeError``, as a programming error would raise), ``lost``
(``GraphMemoryLost``: a capture's memory pool held until the process ends).  Invariant:
with no plan, ``check`` costs one dictionary lookup.

>>> inject("step", times=1, kind="bug")
>>> try:
...     check("step")
... except TypeError as err:
...     print(err)
injected fault at step
>>> check("step")  # used up
>>> clear()
"""
from __future__ import annotations

import os

import torch

__all__ = ["inject", "check", "clear", "POINTS", "KINDS"]

POINTS = ("capture", "step")
KINDS = ("oom", "device", "bug", "lost")

_plan: dict[str, list] = {}      # point -> [times left, kind]
_env_read = False


def inject(point: str, times: int = 1, kind: str = "oom") -> None:
    """Raise a ``kind`` fault the next ``times`` times ``point`` is reached in this process."""
    if point not in POINTS or kind not in KINDS:
        raise ValueError(f"fault {point}:{kind}: points are {POINTS}, kinds {KINDS}")
    _plan[point] = [times, kind]


def clear() -> None:
    """Forget every planned fault (also those of ``EXPRSEARCH_FAULTS``)."""
    global _env_read
    _plan.clear()
    _env_read = True


def _read_env() -> None:
    global _env_read
    _env_read = True
    for item in filter(None, (p.strip() for p in os.environ.get("EXPRSEARCH_FAULTS", "").split(","))):
        point, _, rest = item.partition(":")
        times, _, kind = rest.partition(":")
        inject(point, int(times or 1), kind or "oom")


def check(point: str, device: torch.device | None = None) -> None:
    """Raise the fault planned at ``point``, if any is left."""
    if not _env_read:
        _read_env()
    plan = _plan.get(point)
    if not plan or plan[0] <= 0:
        return
    plan[0] -= 1
    kind = plan[1]
    if kind == "bug":
        raise TypeError(f"injected fault at {point}")
    if kind == "lost":
        from exprsearch.errors import GraphMemoryLost
        raise GraphMemoryLost(f"injected fault at {point}: a capture's memory pool is lost")
    if kind == "device":
        raise RuntimeError(f"CUDA error: an illegal memory access was encountered (injected fault at {point})")
    if device is not None and device.type == "cuda":  # the caching allocator's own error, for real
        free, total = torch.cuda.mem_get_info(device)
        torch.empty(2 * total, dtype=torch.uint8, device=device)
    raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 20.00 MiB (injected fault at {point})")
