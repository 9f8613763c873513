"""AST --> sympy: the algebra of an expression, and proofs of equality.

Input: an expression.  Output: a sympy expression in the symbol ``x`` where each linear is an
opaque function named by its X_Y and slot (``lin1_2_wb1(...)``; a gate's ``lin1_2_wb3(...)`` is
another function, so a gate is never its value path): the elementwise algebra.  Invariant: built only from the op
table's sympy builders.  Channels are treated elementwise, so widths are not modelled: ``dedup``
only asks sympy about expressions whose numeric fingerprints (which do model widths) agree.

>>> from .validity import parse_one
>>> to_sympy(parse_one("mul(x,add(x,tanh(x)))"))
x*(x + tanh(x))
>>> prove_equal(parse_one("add(mul(x,x),mul(x,tanh(x)))"), parse_one("mul(x,add(x,tanh(x)))"))
True
>>> to_sympy(parse_one("mul(linear1_3(x,wb1),linear1_3(x,wb3))"))
lin1_3_wb1(x)*lin1_3_wb3(x)
"""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

import sympy

from .expr import Expr
from .ops import Kind

__all__ = ["to_sympy", "prove_equal", "simplified", "algebra", "same_algebra", "X_SYMBOL", "PROOF_MAX_SIZE",
           "PROOF_SECONDS"]

X_SYMBOL = sympy.Symbol("x", real=True)
PROOF_MAX_SIZE = 40    # larger expressions are not sent to sympy (deep nests take it minutes)
PROOF_SECONDS = 5.0    # wall-clock limit of one proof (in the main thread, where a timer can interrupt)


class _OutOfTime(BaseException):
    """Raised by the proof timer; a BaseException so that sympy's ``except Exception`` lets it by."""


def _out_of_time(signum: int, frame: object) -> None:
    raise _OutOfTime()


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise ``_OutOfTime`` in the block after ``seconds`` (SIGALRM: main thread, POSIX only; an
    earlier outer deadline, e.g. a test timeout, is left alone and restored after)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    outer_left, outer_every = signal.getitimer(signal.ITIMER_REAL)
    if outer_left and outer_left <= seconds:
        yield
        return
    start, outer = time.monotonic(), signal.signal(signal.SIGALRM, _out_of_time)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer)
        if outer_left:
            signal.setitimer(signal.ITIMER_REAL, max(1e-3, outer_left - (time.monotonic() - start)), outer_every)


@lru_cache(maxsize=50_000)
def to_sympy(e: Expr) -> sympy.Expr:
    """The elementwise algebra of ``e`` (linears are opaque functions of their input)."""
    k = e.op.kind
    if k is Kind.VAR:
        return X_SYMBOL
    if k is Kind.LINEAR:
        return sympy.Function(f"lin{e.op.blocks}_{e.op.ratio}_{e.args[1].name}", real=True)(
            to_sympy(e.args[0]))
    return e.op.sympy_fn(*(to_sympy(a) for a in e.args))  # type: ignore[misc]


def prove_equal(a: Expr, b: Expr, simplify: bool = True) -> bool | None:
    """True if sympy proves ``a == b`` as functions; False means "not proved" (not "different");
    None: sympy was not asked or gave up -- an expression over ``PROOF_MAX_SIZE`` nodes, or a proof
    over ``PROOF_SECONDS``.  ``simplify=False`` tries only ``expand`` (milliseconds); ``simplify``
    can take seconds."""
    if max(a.size, b.size) > PROOF_MAX_SIZE:
        return None
    try:
        with _time_limit(PROOF_SECONDS):
            diff = sympy.expand(to_sympy(a) - to_sympy(b))
            if diff == 0:
                return True
            return simplify and bool(sympy.simplify(diff) == 0)
    except _OutOfTime:
        return None
    except (TypeError, ValueError, RecursionError, NotImplementedError, AttributeError):
        return False



def algebra(e: Expr, simplify: bool = False) -> tuple[sympy.Expr, ...] | None:
    """The forms of ``e``'s algebra that proofs compare, built once per expression: expanded, and
    with ``simplify`` also simplified.  None: sympy gave up (over ``PROOF_MAX_SIZE`` nodes or
    ``PROOF_SECONDS``), so no proof about ``e`` is attempted.

    >>> from .validity import parse_one
    >>> same_algebra(algebra(parse_one("mul(x,add(x,tanh(x)))")), algebra(parse_one("add(mul(x,tanh(x)),square(x))")))
    True
    """
    if e.size > PROOF_MAX_SIZE:
        return None
    try:
        with _time_limit(PROOF_SECONDS):
            expanded = sympy.expand(to_sympy(e))
            return (expanded, sympy.simplify(expanded)) if simplify else (expanded,)
    except _OutOfTime:
        return None
    except (TypeError, ValueError, RecursionError, NotImplementedError, AttributeError):
        return None


PAIR_SECONDS = 1.0  # wall-clock limit of comparing two expressions' prepared forms


def same_algebra(a: tuple[sympy.Expr, ...], b: tuple[sympy.Expr, ...]) -> bool:
    """True if two ``algebra`` results prove the functions equal (a form of one minus the same
    form of the other expands to 0); False: not proved (also past ``PAIR_SECONDS``)."""
    try:
        with _time_limit(PAIR_SECONDS):
            return any(fa == fb or sympy.expand(fa - fb) == 0 for fa, fb in zip(a, b))
    except _OutOfTime:
        return False
    except (TypeError, ValueError, RecursionError, NotImplementedError, AttributeError):
        return False


def simplified(e: Expr) -> sympy.Expr | None:
    """The algebra of ``e``, simplified where sympy manages within the proof limits (else as built);
    None if building it alone takes longer than ``PROOF_SECONDS``."""
    built = None
    try:
        with _time_limit(PROOF_SECONDS):
            built = to_sympy(e)
            return built if e.size > PROOF_MAX_SIZE else sympy.simplify(built)
    except _OutOfTime:
        return built
