"""expressions --> new expressions: mutation and crossover that always yield valid candidates.

Input: strictly valid parents in a ``Space`` and a ``random.Random``.  Output: a child that is
strictly valid and inside the space's limits (every proposal is validated; after a bounded
number of failed proposals the operator falls back to one that cannot fail).  Deterministic for
a given generator state.  The gate mutations (``GATE_MUTATIONS``: insert or remove a ``wb3``
gate) are drawn only in a space with ``gates``, so mutation in the reference space is unchanged.

>>> import random
>>> from exprsearch.lang.parsing import parse
>>> sp = Space()
>>> child, how = mutate(parse("linear1_1(gelu(linear1_1(x,wb1)),wb2)"), sp, random.Random(0))
>>> sp.allows(child) and is_valid(child)
True
>>> gated = Space(gates=True)
>>> str(_insert_gate(parse("linear1_3(gelu(linear1_3(x,wb1)),wb2)"), gated, random.Random(2)))
'linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)'
>>> str(remove_gate(parse("linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)"), gated, random.Random(0)))
'linear1_3(gelu(linear1_3(x,wb1)),wb2)'
"""
from __future__ import annotations

import random
from typing import Callable

from exprsearch.lang.expr import WB3, Expr, Path, X, node
from exprsearch.lang.ops import Kind, Op
from exprsearch.lang.validity import is_valid, split_ffn

from .generate import Space, random_tree, sample

__all__ = ["mutate", "crossover", "with_xy", "remove_gate", "MUTATIONS", "GATE_MUTATIONS"]

_TRIES = 64


def _paths(e: Expr, pred: Callable[[Expr], bool]) -> list[Path]:
    return [p for p, n in e.walk_paths() if n.kind is not Kind.SLOT and pred(n)]


def _linear_free(n: Expr) -> bool:
    return not n.linears()


def _swap_op(e: Expr, sp: Space, rng: random.Random) -> Expr | None:
    paths = _paths(e, lambda n: n.kind in (Kind.UNARY, Kind.BINARY))
    if not paths:
        return None
    p = rng.choice(paths)
    n = e.at(p)
    pool = sp.unary if n.kind is Kind.UNARY else sp.binary
    others = [o for o in pool if o != n.name]
    return e.replace_at(p, node(rng.choice(others), *n.args)) if others else None


def _insert_unary(e: Expr, sp: Space, rng: random.Random) -> Expr | None:
    if not sp.unary:
        return None
    p = rng.choice(_paths(e, lambda n: True))
    return e.replace_at(p, node(rng.choice(sp.unary), e.at(p)))


def _remove_unary(e: Expr, sp: Space, rng: random.Random) -> Expr | None:
    paths = _paths(e, lambda n: n.kind is Kind.UNARY)
    if not paths:
        return None
    p = rng.choice(paths)
    return e.replace_at(p, e.at(p).args[0])


def _replace_subtree(e: Expr, sp: Space, rng: random.Random) -> Expr | None:
    p = rng.choice(_paths(e, _linear_free))
    return e.replace_at(p, random_tree(sp, rng))


def _wrap_binary(e: Expr, sp: Space, rng: random.Random) -> Expr | None:
    if not sp.binary:
        return None
    p = rng.choice(_paths(e, lambda n: n.kind is not Kind.LINEAR or n.args[1].name != "wb2"))
    other = random_tree(sp, rng, max_depth=1, max_size=2)
    pair = (e.at(p), other) if rng.random() < 0.5 else (other, e.at(p))
    return e.replace_at(p, node(rng.choice(sp.binary), *pair))


def with_xy(e: Expr, new: Op) -> Expr:
    """``e`` with every linear at the shape ``new`` (same inputs and weight slots).

    >>> from exprsearch.lang.ops import linear_op
    >>> from exprsearch.lang.parsing import parse
    >>> str(with_xy(parse("linear1_1(gelu(linear1_1(x,wb1)),wb2)"), linear_op(2, 4)))
    'linear2_4(gelu(linear2_4(x,wb1)),wb2)'
    """
    out = e
    for p, n in list(e.walk_paths()):
        if n.kind is Kind.LINEAR:
            out = out.replace_at(p, node(new, out.at(p).args[0], n.args[1]))
    return out


def _change_xy(e: Expr, sp: Space, rng: random.Random) -> Expr | None:
    current = e.linears()[0].op
    others = [o for o in sp.xy if o is not current]
    return with_xy(e, rng.choice(others)) if others else None


def _slot_path(e: Expr, slot: str) -> Path | None:
    """The path of the (first) linear with weight slot ``slot``, or None."""
    return next((p for p, n in e.walk_paths() if n.kind is Kind.LINEAR and n.args[1].name == slot), None)


def _insert_gate(e: Expr, sp: Space, rng: random.Random) -> Expr | None:
    """Gate the wb1 branch: a node ``a`` on the path from the wb1 linear up to the wb2 linear's
    input becomes ``mul(a, linearX_Y(x', wb3))`` (x' is x or, half the time, a small tree over x):
    GEGLU from the standard FFN."""
    if not sp.gates or not sp.binary or _slot_path(e, "wb3") is not None:
        return None
    p1, p2 = _slot_path(e, "wb1"), _slot_path(e, "wb2")
    if p1 is None or p2 is None or p1[:len(p2) + 1] != p2 + (0,):
        return None
    p = p1[:rng.randrange(len(p2) + 1, len(p1) + 1)]  # the wb1 linear or one of its ancestors below wb2
    gated = X if rng.random() < 0.5 else random_tree(sp, rng, max_depth=1, max_size=2)  # GLUs gate x
    gate = node(e.at(p1).op, gated, WB3)
    op = "mul" if "mul" in sp.binary else rng.choice(sp.binary)
    return e.replace_at(p, node(op, e.at(p), gate))


def remove_gate(e: Expr, sp: Space, rng: random.Random) -> Expr | None:
    """Drop the gate: the binary node joining the wb1 and wb3 branches becomes its wb1 operand."""
    p1, p3 = _slot_path(e, "wb1"), _slot_path(e, "wb3")
    if p1 is None or p3 is None:
        return None
    k = next((i for i, (a, b) in enumerate(zip(p1, p3)) if a != b), None)
    if k is None:  # one linear inside the other: not a strictly valid gate
        return None
    return e.replace_at(p1[:k], e.at(p1[:k + 1]))


MUTATIONS: dict[str, Callable[[Expr, Space, random.Random], Expr | None]] = {
    "swap_op": _swap_op, "insert_unary": _insert_unary, "remove_unary": _remove_unary,
    "replace_subtree": _replace_subtree, "wrap_binary": _wrap_binary, "change_xy": _change_xy,
    "insert_gate": _insert_gate, "remove_gate": remove_gate,
}
GATE_MUTATIONS = ("insert_gate", "remove_gate")  # drawn only where the space allows gates


def _ok(child: Expr | None, parent: Expr, sp: Space) -> bool:
    return child is not None and child is not parent and sp.allows(child) and is_valid(child)


def mutate(e: Expr, sp: Space, rng: random.Random) -> tuple[Expr, str]:
    """A valid child of ``e`` differing from it, and the name of the mutation that made it."""
    names = [n for n in MUTATIONS if sp.gates or n not in GATE_MUTATIONS]
    for _ in range(_TRIES):
        how = rng.choice(names)
        child = MUTATIONS[how](e, sp, rng)
        if _ok(child, e, sp):
            return child, how  # type: ignore[return-value]
    child = _change_xy(e, sp, rng)
    if _ok(child, e, sp):
        return child, "change_xy"  # type: ignore[return-value]
    return sample(sp, rng), "resample"


def _wb1_input_path(e: Expr) -> Path:
    return next(p for p, n in e.walk_paths() if n.kind is Kind.LINEAR and n.args[1].name == "wb1") + (0,)


def crossover(a: Expr, b: Expr, sp: Space, rng: random.Random) -> tuple[Expr, str]:
    """A valid child mixing two parents: swap the wb1 input (G), the part between the linears
    (F), the outer activation, or a linear-free subtree."""
    for _ in range(_TRIES):
        how = rng.choice(["swap_g", "swap_f", "swap_outer", "subtree"])
        child: Expr | None
        if how == "swap_g":
            child = a.replace_at(_wb1_input_path(a), b.at(_wb1_input_path(b)))
        elif how == "swap_f":
            child = b.replace_at(_wb1_input_path(b), a.at(_wb1_input_path(a)))
        elif how == "swap_outer":
            outer_a, w2a, _ = split_ffn(a)
            outer_b, _, _ = split_ffn(b)
            child = node(outer_b, w2a) if outer_b else w2a
            if outer_b == outer_a:
                continue
        else:
            pa, pb = rng.choice(_paths(a, _linear_free)), rng.choice(_paths(b, _linear_free))
            child = a.replace_at(pa, b.at(pb))
        if child is not a and child is not b and _ok(child, a, sp):
            return child, how
    child, how = mutate(a, sp, rng)
    return child, f"mutate:{how}"


