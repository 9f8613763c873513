"""an exception raised while training or scoring candidates --> whose it is.

Input: the exception.  Output: the reason a candidate fails with, when the candidate caused it (an
error of its expression or its training: ``RuntimeError`` -- shapes, NaN/Inf, out of memory -- or
one of our own ``ExprSearchError`` s), else the exception re-raised: a broken device as
``DeviceError``, anything else (a bug) as it is.  Invariant: a bug in our code is never stored as
a failed candidate (STYLE.md, principle 14).
"""
from __future__ import annotations

import torch

from exprsearch.errors import DeviceError, ExprSearchError

from .group import is_oom
from .train import CandidateFailed

__all__ = ["candidates_fault"]


def _device_broken(err: BaseException) -> bool:
    """A CUDA error that leaves the device unusable (device-side assert, illegal access): every
    later candidate would fail too, so it stops the run instead of failing one candidate."""
    text = str(err)
    return (isinstance(err, getattr(torch, "AcceleratorError", ())) or "CUDA error" in text
            or "device-side assert" in text) and not is_oom(err)


def candidates_fault(err: BaseException) -> str:
    """The failure reason when ``err`` is one a candidate causes -- an error of its expression or
    its training (``RuntimeError``: shapes, NaN/Inf, out of memory; our own ``ExprSearchError`` s) --
    else re-raise it: a device fault as ``DeviceError``, anything else (a bug) as it is.

    >>> candidates_fault(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    'RuntimeError: mat1 and mat2 shapes cannot be multiplied'
    >>> candidates_fault(KeyError("typo"))
    Traceback (most recent call last):
    KeyError: 'typo'
    """
    if isinstance(err, DeviceError):
        raise err
    if _device_broken(err):
        raise DeviceError(f"the GPU reported an error no candidate can cause ({type(err).__name__}: {err})") from err
    if is_oom(err):
        return "CUDA out of memory"
    if isinstance(err, CandidateFailed):
        return str(err)
    if isinstance(err, (ExprSearchError, RuntimeError)):
        return f"{type(err).__name__}: {err}"
    raise err
