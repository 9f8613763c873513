"""evaluated results --> a stop when failures are not the candidates': the search's alarm.

Input: each freshly evaluated result of a run, in arrival order, and the end of each stage.
Output: nothing while failures look like candidates' own (NaN losses, exploding gradients,
hurdles, errors that differ); ``RunAborted`` -- with the cause and a fix -- when ``STREAK``
results in a row failed with the same error (digits aside), or when a stage evaluated candidates
and none succeeded.  Before raising, the rows of that streak are deleted from the store: they
say nothing about their candidates, and ``--resume`` evaluates them again once the cause is fixed.

>>> w = FailureWatch(None, "run")
>>> for k in range(3):
...     w.observe(f"k{k}", {"status": "failed", "reason": f"SST-2: loss is nan at step {k}"})
>>> w.observe("k3", {"status": "failed", "reason": "SST-2: CUDA out of memory"})
>>> len(w.streak), hint("RTE: CUDA out of memory")[:24]
(1, 'the GPU has too little f')
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from exprsearch.errors import RunAborted

if TYPE_CHECKING:
    from .store import Store

__all__ = ["FailureWatch", "STREAK", "hint"]

STREAK = 8  # failures in a row with one error: the error is not the candidates'

# reasons a candidate's own training gives (they may repeat without meaning anything is broken)
_CANDIDATES_OWN = ("loss is", "gradient norm is", "exploding gradients", "hurdle at step")

_HINTS = (  # (text in the reason, what to do)
    ("out of memory", "the GPU has too little free memory for these sizes: try --group 4 and --workers 1 "
                      "(or free the GPU of other processes)"),
    ("graph", "CUDA-graph capture keeps failing: try --no-cuda-graphs"),
    ("offset increment", "CUDA-graph capture keeps failing: try --no-cuda-graphs"),
    ("worker process died", "the worker processes are being killed (host memory?): try --workers 1"),
)


def _cause(reason: str) -> str:
    """A failure reason without its task and its numbers: the same error gives the same cause."""
    return re.sub(r"[\d.]+", "#", reason.split(": ", 1)[-1]).strip()


def hint(reason: str) -> str:
    """What to try for a systemic failure with this reason."""
    low = reason.lower()
    return next((fix for text, fix in _HINTS if text in low),
                "evaluate one candidate with `exprsearch eval SPEC --debug` to see the whole error")


class FailureWatch:
    """Watches one run's results; see the module docstring."""

    def __init__(self, store: Store, run_id: str, streak: int = STREAK) -> None:
        self.store, self.run_id, self.limit = store, run_id, streak
        self.streak: list[str] = []
        self.cause = ""
        self.last_reason = ""
        self.stage_ok = 0
        self.stage_failed: list[str] = []  # this stage's fresh failures

    def observe(self, key: str, result: dict[str, Any]) -> None:
        """One fresh result (not replayed, not reused); raises ``RunAborted`` as described above."""
        if result.get("status") != "failed":
            self.stage_ok += result.get("status") == "ok"
            self.streak, self.cause = [], ""
            return
        reason = str(result.get("reason", ""))
        self.last_reason = reason
        self.stage_failed.append(key)
        if any(own in reason for own in _CANDIDATES_OWN):
            self.streak, self.cause = [], ""
            return
        cause = _cause(reason)
        self.streak = self.streak + [key] if cause == self.cause else [key]
        self.cause = cause
        if len(self.streak) >= self.limit:
            self._abort(f"{len(self.streak)} candidates in a row failed with the same error ({reason})", self.streak)

    def stage_done(self, stage: int) -> None:
        """The end of a stage: every candidate it evaluated failed -> ``RunAborted``."""
        failed, ok = self.stage_failed, self.stage_ok
        self.stage_failed, self.stage_ok = [], 0
        if failed and not ok:
            self._abort(f"every candidate of stage {stage} failed ({len(failed)}; the last: {self.last_reason})",
                        failed)

    def _abort(self, what: str, keys: list[str]) -> None:
        """Forget ``keys``' rows, then raise ``RunAborted`` naming the cause and the fix."""
        fix = hint(self.last_reason)
        where = ""
        if self.store is not None:
            self.store.forget(self.run_id, keys)
            where = f" --store {self.store.path}"
        raise RunAborted(f"stopping run {self.run_id}: {what}: this is not the candidates' doing. "
                         f"{fix[0].upper()}{fix[1:]}; then continue with `exprsearch search --resume "
                         f"{self.run_id}{where}` (the {len(keys)} failed rows were not kept: they are evaluated again)")
