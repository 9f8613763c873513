"""expressions --> new expressions: mutation and crossover that always yield valid candidates.

Input: strictly valid parents in a ``Space`` and a ``random.Random``.  Output: a child that is
strictly valid and inside the space's limits (every proposal is validated; after a bounded
number of failed proposals the operator falls back to one that cannot fail).  Deterministic for
a given generator state.

>>> import random
>>> from exprsearch.lang.parsing import parse
>>> sp = Space()
>>> child, how = mutate(parse("linear1_1(gelu(linear1_1(x,wb1)),wb2)"), sp, random.Random(0))
>>> sp.allows(child) and is_valid(child)
True
"""
from __future__ import annotations

import random
from typing import Callable

from exprsearch.lang.expr import Expr, Path, node
from exprsearch.lang.ops import Kind
from exprsearch.lang.validity import is_valid, split_ffn

from .generate import Space, random_tree, sample

__all__ = ["mutate", "crossover", "MUTATIONS"]

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
    p = rng.choice(_paths(e, lambda n: n.kind is not Kind.LINEAR or n.args[1].name == "wb1"))
    other = random_tree(sp, rng, max_depth=1, max_size=2)
    pair = (e.at(p), other) if rng.random() < 0.5 else (other, e.at(p))
    return e.replace_at(p, node(rng.choice(sp.binary), *pair))


def _change_xy(e: Expr, sp: Space, rng: random.Random) -> Expr | None:
    current = e.linears()[0].op
    others = [o for o in sp.xy if o is not current]
    if not others:
        return None
    new = rng.choice(others)
    out = e
    for p, n in list(e.walk_paths()):
        if n.kind is Kind.LINEAR:
            out = out.replace_at(p, node(new, out.at(p).args[0], n.args[1]))
    return out


MUTATIONS: dict[str, Callable[[Expr, Space, random.Random], Expr | None]] = {
    "swap_op": _swap_op, "insert_unary": _insert_unary, "remove_unary": _remove_unary,
    "replace_subtree": _replace_subtree, "wrap_binary": _wrap_binary, "change_xy": _change_xy,
}


def _ok(child: Expr | None, parent: Expr, sp: Space) -> bool:
    return child is not None and child is not parent and sp.allows(child) and is_valid(child)


def mutate(e: Expr, sp: Space, rng: random.Random) -> tuple[Expr, str]:
    """A valid child of ``e`` differing from it, and the name of the mutation that made it."""
    names = list(MUTATIONS)
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


