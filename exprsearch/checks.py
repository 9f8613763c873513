"""config values --> ``ConfigError``: the range checks of the frozen config dataclasses.

Each config's ``__post_init__`` names its fields and their ranges here, so a bad value (from the
command line, a preset, a stored run or a library call) is one message at construction, not a
crash or a NaN loss minutes later.  ``None`` is "not set" and always passes.

>>> from dataclasses import dataclass
>>> @dataclass
... class C:
...     steps: int = 0
...     lr: float = float("nan")
>>> whole(C(), "steps", least=1)
Traceback (most recent call last):
...
exprsearch.errors.ConfigError: steps must be a whole number >= 1, got 0
>>> number(C(), "lr", above=0)
Traceback (most recent call last):
...
exprsearch.errors.ConfigError: lr must be a finite number > 0, got nan
"""
from __future__ import annotations

import math
from typing import Any

from exprsearch.errors import ConfigError

__all__ = ["whole", "number"]


def _bounds(**limits: float | None) -> str:
    signs = {"above": ">", "least": ">=", "below": "<", "most": "<="}
    return " and ".join(f"{signs[k]} {v:g}" for k, v in limits.items() if v is not None)


def whole(cfg: Any, *names: str, least: int = 0, most: int | None = None, each: bool = False) -> None:
    """Integer fields of ``cfg`` from ``least`` to ``most`` (``each``: every item of a tuple field)."""
    for name in names:
        value = getattr(cfg, name)
        for v in (value if each else (value,)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < least
                                  or (most is not None and v > most)):
                raise ConfigError(f"{name} must be {'whole numbers' if each else 'a whole number'} "
                                  f"{_bounds(least=least, most=most)}, got {value!r}")


def number(cfg: Any, *names: str, above: float | None = None, least: float | None = None,
           below: float | None = None, most: float | None = None, each: bool = False) -> None:
    """Finite real fields of ``cfg`` within the bounds given (``each``: every item of a tuple field)."""
    for name in names:
        value = getattr(cfg, name)
        for v in (value if each else (value,)):
            if v is None:
                continue
            if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                    or (above is not None and not v > above) or (least is not None and not v >= least)
                    or (below is not None and not v < below) or (most is not None and not v <= most)):
                raise ConfigError(f"{name} must be {'finite numbers' if each else 'a finite number'} "
                                  f"{_bounds(above=above, least=least, below=below, most=most)}, got {value!r}")
