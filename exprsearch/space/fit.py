"""an over-budget proposal --> the same expressions at smaller shapes, or None: proposals that fit.

Input: a ``ModelSpec`` a sampler proposed, one ``Space`` per layer, ``over(spec) -> bool`` (the
search's budget check) and a ``random.Random``.  Output: a spec within the budget whose layers keep
their bodies (operators, gates, outer activation) with a smaller ``linearX_Y`` -- one step at a
time, in a layer drawn with odds in proportion to its cost (the widest shrink most), to the next
cheaper shape of its space (cost X / Y: the FFN's weights scale with X blocks of width D / Y) --
then, if no layer can shrink further, without a random layer's ``wb3`` gate (where what is left
is valid); None when even that does not fit.
Why: a budget search draws X and Y per layer, so under ``ffn:50%`` only a small share of random
6-layer proposals fit (the sum of X / Y over layers at most 3) and under ``ffn:25%`` almost none
(every layer at ``linear1_4``, none gated): rejected proposals ended an H100 search at 23 of 150
candidates (issue 29) and another at 1.  Shrinking keeps what the sampler proposed and moves it
to the budget's edge, where the widths the budget allows are.
Invariants: the result is strictly valid and inside each layer's space; deterministic for a
given generator state; a spec that fits is returned as it is.

>>> import random
>>> from exprsearch.lang.parsing import parse_spec
>>> spec = parse_spec("linear1_1(max(x,gelu(linear1_1(x,wb1))),wb2)").broadcast(2)
>>> cost = lambda s: sum(xy_cost(e.linears()[0].op) for e in s.layers)
>>> print(fit(spec, [Space(blocks=(1,))] * 2, lambda s: cost(s) > 0.7, random.Random(0)))
[linear1_4(max(x,gelu(linear1_4(x,wb1))),wb2); linear1_3(max(x,gelu(linear1_3(x,wb1))),wb2)]
>>> fit(spec, [Space()] * 2, lambda s: True, random.Random(0)) is None
True
"""
from __future__ import annotations

import random
from typing import Callable

from exprsearch.lang.expr import Expr, ModelSpec
from exprsearch.lang.ops import Op
from exprsearch.lang.validity import is_valid

from .evolve import remove_gate, with_xy
from .generate import Space

__all__ = ["fit", "xy_cost"]


def xy_cost(op: Op) -> float:
    """A shape's relative FFN size: X blocks of width D / Y.

    >>> from exprsearch.lang.ops import linear_op
    >>> xy_cost(linear_op(2, 4)), xy_cost(linear_op(1, 1))
    (0.5, 1.0)
    """
    return op.blocks / op.ratio


def _shrink(e: Expr, sp: Space, rng: random.Random) -> Expr | None:
    """``e`` at the next cheaper shape of ``sp`` (a random one among equally cheap), or None."""
    now = xy_cost(e.linears()[0].op)
    cheaper = [o for o in sp.xy if xy_cost(o) < now]
    if not cheaper:
        return None
    step = max(xy_cost(o) for o in cheaper)
    return with_xy(e, rng.choice([o for o in cheaper if xy_cost(o) == step]))


def _ungate(e: Expr, sp: Space, rng: random.Random) -> Expr | None:
    """``e`` without its gate, where the result is valid (joining the branches may nest activations)."""
    out = remove_gate(e, sp, rng)
    return out if out is not None and sp.allows(out) and is_valid(out) else None


def fit(spec: ModelSpec, spaces: list[Space], over: Callable[[ModelSpec], bool],
        rng: random.Random) -> ModelSpec | None:
    """``spec`` if it fits, else its layers shrunk step by step (then ungated) until it does;
    None when nothing the space allows fits."""
    if not over(spec):
        return spec
    layers = list(spec.layers)
    while True:
        smaller = {i: s for i, e in enumerate(layers) if (s := _shrink(e, spaces[i], rng)) is not None}
        if smaller:
            at = sorted(smaller)
            i = rng.choices(at, weights=[xy_cost(layers[j].linears()[0].op) for j in at])[0]
            layers[i] = smaller[i]
        else:
            ungated = {i: g for i, e in enumerate(layers) if (g := _ungate(e, spaces[i], rng)) is not None}
            if not ungated:
                return None
            i = rng.choice(sorted(ungated))
            layers[i] = ungated[i]
        if not over(current := ModelSpec(tuple(layers), spec.attn)):
            return current
