"""score lists --> summary statistics: mean and spread over seeds, rank agreement.

Plain Python: the fidelity study and the plots read these (the bootstrap spread of a dev metric
is ``glue.metric_std``).

>>> mean_std([1.0, 2.0, 3.0])
(2.0, 1.0)
"""
from __future__ import annotations

import math
from typing import Sequence

__all__ = ["mean_std", "kendall_tau", "paired_interval"]

# two-sided Student t quantiles (0.95 one-sided: a 90 % interval) by degrees of freedom
_T90 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860, 9: 1.833, 10: 1.812,
        12: 1.782, 15: 1.753, 20: 1.725, 30: 1.697}


def paired_interval(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean, std and 90 % t-interval of the paired differences a[i] - b[i] (the same seed i).

    >>> r = paired_interval([62.0, 63.0, 61.5, 62.5, 63.5], [61.0, 61.5, 61.0, 62.0, 62.0])
    >>> r["mean"], round(r["low"], 2), round(r["high"], 2), r["n"]
    (1.0, 0.52, 1.48, 5)
    """
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("paired_interval needs two lists of the same length >= 2")
    d = [x - y for x, y in zip(a, b)]
    m, s = mean_std(d)
    df = len(d) - 1
    t = _T90[max(k for k in _T90 if k <= df)]
    half = t * s / math.sqrt(len(d))
    return {"mean": m, "std": s, "low": m - half, "high": m + half, "n": len(d)}


def mean_std(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(xs)
    if not n:
        raise ValueError("mean_std of no values")
    m = sum(xs) / n
    return m, (math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0)


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b between two score lists.

    >>> kendall_tau([1, 2, 3], [1, 2, 3]), kendall_tau([1, 2, 3], [3, 2, 1])
    (1.0, -1.0)
    """
    n = len(a)
    conc = disc = ta = tb = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ta += 1
            elif db == 0:
                tb += 1
            elif (da > 0) == (db > 0):
                conc += 1
            else:
                disc += 1
    den = math.sqrt((conc + disc + ta) * (conc + disc + tb))
    return (conc - disc) / den if den else 0.0
