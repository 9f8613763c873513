"""typed AST --> validated AST: the rules of the EfficientBERT FFN search space.

Input: any well-typed expression.  Output: the same expression, or the first broken rule's error
(each rule has its own ``ValidityError`` subclass and names the offending node).  Invariant: a
strictly valid expression has the shape ``[act](linearX_Y(F[linearX_Y(G[x], wb1)], wb2))`` or,
gated, ``[act](linearX_Y(F[linearX_Y(G[x], wb1), linearX_Y(G3[x], wb3)], wb2))``.

Strict rules (the reference method; the wb3 parts are the gated-FFN extension, so an expression
without wb3 is judged exactly as in the reference):
  one-wb1-one-wb2       exactly one wb1 linear and one wb2 linear; at most one wb3 linear
  wb1-before-wb2        the wb1 linear, and the wb3 linear if any, lie on the wb2 linear's input path
  same-linear-XY        all linears have the same X_Y
  no-nested-activation  no activation directly inside an activation
  no-nested-linear      no linear inside the wb1 linear's input, nor inside the wb3 linear's
  x-reachable           the output depends on x (``sub(a, b)`` of equal terms is zero)
  output-shape          above the wb2 linear there is at most one activation
Relaxed rules (``strict=False``, exploratory spaces such as parallel wb1 branches) keep only
no-nested-linear, wb1-before-wb2 (every wb2 linear has a wb1 linear inside, every wb3 linear is
inside a wb2 linear's input), same-linear-XY, x-reachable and output-width (the output is H wide).

>>> validate(parse_one("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)")) is not None
True
>>> validate(parse_one("linear1_2(relu(relu(linear1_2(x,wb1))),wb2)"))
Traceback (most recent call last):
...
exprsearch.errors.NestedActivationError: relu directly inside relu: activations may not nest
  in: relu(linear1_2(x,wb1))
"""
from __future__ import annotations

import functools

from exprsearch.errors import (
    LinearMismatchError,
    NestedActivationError,
    NestedLinearError,
    OutputError,
    SlotCountError,
    SlotOrderError,
    UnreachableInputError,
    WidthError,
)

from .expr import Expr, Linear
from .ops import Kind

__all__ = ["validate", "is_valid", "width_of", "split_ffn", "gate_of", "parse_one"]


def parse_one(text: str) -> Expr:
    """Parse one expression without validating it (for examples and tests)."""
    from .syntax import parse_layers
    (e,) = parse_layers(text)
    return e


def _slot_linears(e: Expr, slot: str) -> list[Linear]:
    return [n for n in e.walk() if isinstance(n, Linear) and n.slot == slot]


def width_of(e: Expr) -> str:
    """Symbolic channel width: 'H' (x, wb2 outputs), 'd' (wb1 outputs) or 'min(H,d)'.

    Binary operands of different widths are cut to the narrower (the compiler's rule).

    >>> width_of(parse_one("mul(linear1_2(x,wb1),x)"))
    'min(H,d)'
    """
    from .widths import symbolic_width
    return symbolic_width(e)


_ZERO, _CONST, _VAR = 0, 1, 2


@functools.lru_cache(maxsize=None)
def _maps_zero_to_zero(o) -> bool:
    import torch
    return o.torch_fn is not None and o.arity == 1 and float(o.torch_fn(torch.zeros(1))[0]) == 0.0


def _constant_in_x(e: Expr) -> Expr | None:
    """None if the value may vary with x; else the node where x is lost (abstract interpretation
    over zero / constant / varies: ``sub(a, b)`` is zero when ``a`` and ``b`` have one canonical
    form -- ``sub(max(x,x),x)`` too --, ``mul`` by zero is zero, an op of constants is constant).

    >>> str(_constant_in_x(parse_one("linear1_1(gelu(linear1_1(sub(max(x,x),x),wb1)),wb2)")))
    'sub(max(x,x),x)'
    """
    from .canon import canonicalize
    memo: dict[Expr, int] = {}

    def go(n: Expr) -> int:
        if n not in memo:
            k = n.kind
            if k is Kind.VAR:
                v = _VAR
            elif k is Kind.LINEAR:
                v = _VAR if go(n.args[0]) == _VAR else _CONST
            elif n.name == "sub" and canonicalize(n.args[0]) is canonicalize(n.args[1]):
                v = _ZERO
            elif k is Kind.UNARY:
                a = go(n.args[0])
                v = a if a == _VAR else (_ZERO if a == _ZERO and _maps_zero_to_zero(n.op) else _CONST)
            else:
                a, b = go(n.args[0]), go(n.args[1])
                if n.name == "mul" and _ZERO in (a, b):
                    v = _ZERO
                elif _VAR in (a, b):
                    v = _VAR
                else:
                    v = _ZERO if a == b == _ZERO else _CONST
            memo[n] = v
        return memo[n]

    if go(e) == _VAR:
        return None
    return next(n for n in e.walk() if memo.get(n, _VAR) != _VAR and n.kind is not Kind.LINEAR
                and all(memo.get(a, _VAR) == _VAR for a in n.args))


def _check_reaches_x(e: Expr) -> None:
    lost = _constant_in_x(e) if "sub(" in e._text else None
    if lost is not None:
        raise UnreachableInputError(f"the output does not depend on x: '{str(lost)[:80]}' is "
                                    f"{'zero' if lost.name == 'sub' else 'constant'}", node=lost,
                                    hint="sub(a, b) of two equal terms is zero")


class _Scan:
    """One pre-order pass collecting what every rule needs."""

    __slots__ = ("wb1", "wb2", "wb3", "nested_act")

    def __init__(self, e: Expr) -> None:
        self.wb1: list[Linear] = []
        self.wb2: list[Linear] = []
        self.wb3: list[Linear] = []  # gates (extension)
        self.nested_act: Expr | None = None
        stack = [e]
        while stack:
            n = stack.pop()
            o = n.op
            if o.kind is Kind.LINEAR:
                slot = n.args[1].op.name
                (self.wb1 if slot == "wb1" else self.wb2 if slot == "wb2" else self.wb3).append(n)  # type: ignore[arg-type]
                stack.append(n.args[0])
                continue
            if o.is_activation and self.nested_act is None and n.args[0].op.is_activation:
                self.nested_act = n.args[0]
            stack.extend(reversed(n.args))


def _check_common(e: Expr, wb1s: list[Linear], wb2s: list[Linear], wb3s: list[Linear]) -> None:
    for w in wb1s + wb3s:
        inner = w.input.linears()
        if inner:
            raise NestedLinearError(f"'{inner[0]}' is inside the input of the {w.slot} linear; only the "
                                    f"wb1 -> wb2 chain may nest linears", node=inner[0])
    for w2 in wb2s:
        if any(n.slot == "wb2" for n in w2.input.linears()):
            raise NestedLinearError("a wb2 linear is inside another wb2 linear's input", node=w2)
        if not any(n.slot == "wb1" for n in w2.input.linears()):
            raise SlotOrderError(f"the wb2 linear '{w2.name}' has no wb1 linear on its input path; "
                                 f"an FFN goes x -> wb1 -> ... -> wb2", node=w2)
    for w3 in wb3s:
        if not any(w2.input.contains(w3) for w2 in wb2s):
            raise SlotOrderError(_GATE_ORDER, node=w3, hint=_GATE_HINT)
    names = {n.op for n in wb1s + wb2s + wb3s}
    if len(names) > 1:
        ref = (wb2s or wb1s or wb3s)[0].name
        odd = next(n for n in wb1s + wb2s + wb3s if n.name != ref)
        raise LinearMismatchError(f"all linears must have the same X_Y; found "
                                  f"{', '.join(sorted(o.name for o in names))}",
                                  node=odd, hint=f"write {ref} everywhere")
    _check_reaches_x(e)


_GATE_ORDER = "the wb3 linear (a gate) must feed the wb2 linear (x -> wb3 -> ... -> wb2)"
_GATE_HINT = "gate the value path, e.g. linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)"


def validate(e: Expr, *, strict: bool = True) -> Expr:
    """Return ``e`` if it obeys the space's rules, else raise the first broken rule's error."""
    scan = _Scan(e)
    wb1s, wb2s, wb3s = scan.wb1, scan.wb2, scan.wb3
    if not strict:
        _check_common(e, wb1s, wb2s, wb3s)
        w = width_of(e)
        if w != "H":
            raise WidthError(f"the FFN output must be H wide for the residual add; this one is {w}",
                             node=e, hint="end with a wb2 linear")
        return e
    if len(wb1s) != 1 or len(wb2s) != 1:
        extra = next(iter(wb1s[1:] + wb2s[1:]), e)
        raise SlotCountError(f"a valid FFN uses exactly one wb1 linear and one wb2 linear; found "
                             f"{len(wb1s)} wb1 and {len(wb2s)} wb2", node=extra,
                             hint="use --relaxed for exploratory spaces with parallel branches")
    if len(wb3s) > 1:
        raise SlotCountError(f"a gated FFN uses at most one wb3 linear (its gate); found {len(wb3s)}",
                             node=wb3s[1], hint="use --relaxed for exploratory spaces with several gates")
    w1, w2 = wb1s[0], wb2s[0]
    w3 = wb3s[0] if wb3s else None
    if w1.input.linears() or (w3 is not None and w3.input.linears()):
        _check_common(e, wb1s, wb2s, wb3s)  # raises the nesting error
    if not w2.input.contains(w1):
        raise SlotOrderError("the wb1 linear must feed the wb2 linear (x -> wb1 -> ... -> wb2)", node=w1)
    if w3 is not None and not w2.input.contains(w3):
        raise SlotOrderError(_GATE_ORDER, node=w3, hint=_GATE_HINT)
    if w1.op is not w2.op or (w3 is not None and w3.op is not w2.op):
        _check_common(e, wb1s, wb2s, wb3s)  # raises the X_Y mismatch
    _check_reaches_x(e)
    if scan.nested_act is not None:
        child = scan.nested_act
        parent = next(n for n in e.walk() if n.op.is_activation and n.args and n.args[0] is child)
        err = NestedActivationError(f"{child.name} directly inside {parent.name}: activations "
                                    f"may not nest", node=child)
        err.within = parent  # the child may also occur legally elsewhere: locate it inside this
        raise err
    if e is not w2 and not (e.op.is_activation and e.args[0] is w2):
        raise OutputError(f"only one activation may wrap the wb2 linear; found '{e.name}' above it",
                          node=e, hint="move the operation inside the wb2 linear's input")
    return e


def is_valid(e: Expr, *, strict: bool = True) -> bool:
    from exprsearch.errors import ValidityError
    try:
        validate(e, strict=strict)
    except ValidityError:
        return False
    return True


def gate_of(e: Expr) -> Linear | None:
    """The gate (the ``wb3`` linear) of a strictly valid FFN, or None.

    >>> str(gate_of(parse_one("linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)")))
    'linear1_3(x,wb3)'
    """
    gates = _slot_linears(e, "wb3")
    return gates[0] if gates else None


def split_ffn(e: Expr) -> tuple[str | None, Linear, Linear]:
    """A strictly valid FFN's parts: (outer activation name or None, wb2 linear, wb1 linear)."""
    w2 = e if isinstance(e, Linear) else e.args[0]
    w1 = _slot_linears(w2, "wb1")[0]
    return (None if e is w2 else e.name), w2, w1  # type: ignore[return-value]
