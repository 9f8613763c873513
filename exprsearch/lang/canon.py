"""AST --> canonical AST: the rewrite rules of ``rewrite.py`` driven to a fixpoint.

Input: any expression.  Output: its canonical form; ``str`` of it is the candidate's identity
(store key, cache key).  Invariants (checked by ``verify_canonical``, always on in tests):
operands of commutative operators are in ``order_key`` order, chains of associative operators
(add, max, min) are flattened across nesting, sorted and folded -- so
``add(add(x,tanh(x)),sigmoid(x))`` and ``add(x,add(sigmoid(x),tanh(x)))`` are one candidate --
and no rule applies anywhere -- but no activation sits directly inside an activation: where the
rules' fixpoint has one there (``sigmoid(max(x,relu(x)))`` -> ``sigmoid(relu(x))``, which breaks
a validity rule), the inner one is written ``neg(neg(u))``: the same value, a valid form, one
form per class (verify accepts the rule left unapplied there).  So the canonical form of a valid
expression is valid, and it re-parses: chains are folded left, or -- where the left fold would
nest deeper than the parser reads -- by depth, two shallowest first (never deeper than the input).  Canonicalisation only uses identities of real
arithmetic: the canonical form computes what the input does, exactly for max/min chains and the
rules, up to floating-point rounding where an add chain is re-associated (mul chains are not
flattened: the ``mul(a, a) -> square(a)`` rule would not stay confluent; the fingerprint merges
them).  Equalities the rules miss are found by ``dedup.py`` (fingerprint + sympy).

>>> from .validity import parse_one
>>> str(canonicalize(parse_one("max(tanh(x), max(x, tanh(x)))")))
'max(x,tanh(x))'
>>> canonical_key(parse_one("mul(gelu(x),gelu(x))")) == canonical_key(parse_one("square(gelu(x))"))
True
>>> str(canonicalize(parse_one("add(x,add(sigmoid(x),tanh(x)))")))
'add(add(x,sigmoid(x)),tanh(x))'
>>> str(canonicalize(parse_one("sigmoid(max(x,relu(x)))")))  # not sigmoid(relu(x)): nested
'sigmoid(neg(neg(relu(x))))'
"""
from __future__ import annotations

import heapq
import os

from exprsearch.errors import ExprSearchError

from .dsl_errors import MAX_NESTING
from .expr import Expr, ModelSpec, node, order_key
from .ops import Op
from .rewrite import RULES, match, rewrite_once

__all__ = ["canonicalize", "canonical_key", "canonicalize_spec", "verify_canonical", "blocked", "VERIFY"]

VERIFY = os.environ.get("EXPRSEARCH_VERIFY", "") not in ("", "0")  # tests turn this on
_MEMO: dict = {}  # node -> its rules' fixpoint; (node, True) -> the same with chains folded by depth
_MEMO_LIMIT = 500_000


def blocked(n: Expr, r: Expr, under_activation: bool) -> bool:
    """Whether rewriting ``n`` to ``r`` would nest an activation directly inside an activation
    that ``n`` did not nest (below an activation parent when ``under_activation``): where a
    canonical form may leave the rule unapplied.

    >>> from .validity import parse_one
    >>> blocked(parse_one("square(sigmoid(x))"), parse_one("sqrelu(sigmoid(x))"), False)
    True
    """
    act = r.op.is_activation
    if not act or n.op.is_activation:
        return act and bool(r.args) and r.args[0].op.is_activation and not n.args[0].op.is_activation
    return under_activation or bool(r.args) and r.args[0].op.is_activation


def _operands(op_name: str, e: Expr) -> list[Expr]:
    """The operands of a chain of one associative operator (any fold), in fold order."""
    out: list[Expr] = []
    stack = [e]
    while stack:
        n = stack.pop()
        if n.op.name == op_name:
            stack.extend((n.args[1], n.args[0]))
        else:
            out.append(n)
    return out


def _left_depth(flat: list[Expr]) -> int:
    d = flat[0].depth
    for x in flat[1:]:
        d = max(d, x.depth) + 1
    return d


def fold(o: Op, flat: list[Expr], by_depth: bool = False) -> Expr:
    """The canonical chain of sorted operands ``flat``: folded left, unless ``by_depth`` or the
    left fold would nest deeper than the parser reads; then the two shallowest operands (earlier
    first among equals) are joined until one is left -- the least depth any fold reaches."""
    if not by_depth and _left_depth(flat) <= MAX_NESTING:
        acc = flat[0]
        for x in flat[1:]:
            acc = node(o, acc, x)
        return acc
    heap = [(x.depth, i, x) for i, x in enumerate(flat)]
    heapq.heapify(heap)
    seq = len(flat)
    while len(heap) > 1:
        (_, i, a), (_, j, b) = heapq.heappop(heap), heapq.heappop(heap)
        n = node(o, a, b) if i < j else node(o, b, a)
        heapq.heappush(heap, (n.depth, seq, n))
        seq += 1
    return heap[0][2]


def _chain(o: Op, flat: list[Expr], by_depth: bool) -> Expr:
    """Canonical chain of an associative-commutative operator: apply the rules to every *pair*
    of operands (any two are neighbours up to AC) until none fires, then sort, dedupe
    (idempotent ops) and fold."""
    changed = True
    while changed:
        changed = False
        for i in range(len(flat)):
            for j in range(i + 1, len(flat)):
                a, b = sorted((flat[i], flat[j]), key=order_key)
                r = rewrite_once(node(o, a, b))
                if r is not None:
                    r = _canon(r, by_depth)
                    flat = [x for k, x in enumerate(flat) if k not in (i, j)] + _operands(o.name, r)
                    changed = True
                    break
            if changed:
                break
    flat.sort(key=order_key)
    if o.idempotent:
        flat = [x for i, x in enumerate(flat) if i == 0 or x is not flat[i - 1]]
    return fold(o, flat, by_depth)


def _canon(e: Expr, by_depth: bool = False) -> Expr:
    """The rules' fixpoint of ``e`` (``by_depth``: every chain folded by depth)."""
    key = (e, True) if by_depth else e
    hit = _MEMO.get(key)
    if hit is not None:
        return hit
    if not e.args:
        result = e
    else:
        args = [_canon(a, by_depth) for a in e.args]
        o = e.op
        if o.associative:
            n = _chain(o, [x for a in args for x in _operands(o.name, a)], by_depth)
        else:
            if o.commutative and order_key(args[1]) < order_key(args[0]):
                args.reverse()
            n = node(o, *args)
        r = rewrite_once(n) if n.args else None
        result = n if r is None else _canon(r, by_depth)
    if len(_MEMO) > _MEMO_LIMIT:
        _MEMO.clear()
    _MEMO[key] = result
    _MEMO[(result, True) if by_depth else result] = result
    return result


def _nests(e: Expr) -> int:
    """How often an activation sits directly inside an activation in ``e``."""
    return sum(n.op.is_activation and n.args[0].op.is_activation for n in e.walk() if n.args)


def _unnest(e: Expr, by_depth: bool, under_activation: bool = False) -> Expr:
    """``e`` with every activation that sits directly inside an activation written ``neg(neg(u))``
    (the same value, exactly; nothing duplicated, so no linear is), bottom up; operands re-sorted
    (their sizes grew)."""
    if not e.args:
        return e
    args = [_unnest(a, by_depth, e.op.is_activation) for a in e.args]
    o = e.op
    if o.associative:
        n = fold(o, sorted((x for a in args for x in _operands(o.name, a)), key=order_key), by_depth)
    else:
        if o.commutative and order_key(args[1]) < order_key(args[0]):
            args.reverse()
        n = node(o, *args)
    return node("neg", node("neg", n)) if under_activation and n.op.is_activation else n


def canonicalize(e: Expr) -> Expr:
    """The canonical form of ``e`` (memoised per node; cheap on repeated subtrees)."""
    result, by_depth = _canon(e), False
    if result.depth > MAX_NESTING:  # left folds nest deeper than the parser reads: fold by depth
        result, by_depth = _canon(e, True), True
    if _nests(result):  # an activation right inside one is invalid: neg(neg(u)), one form per class
        result = _unnest(result, by_depth)
    if VERIFY:
        verify_canonical(result)
    return result


def canonical_key(e: Expr) -> str:
    """The canonical string: the identity of a candidate everywhere."""
    return str(canonicalize(e))


def canonicalize_spec(spec: ModelSpec) -> ModelSpec:
    """Each layer's expression canonical; attention parts and model fields kept."""
    return ModelSpec(tuple(canonicalize(e) for e in spec.layers), spec.attn, spec.hidden)


def verify_canonical(e: Expr) -> None:
    """Raise if ``e`` is not a fixpoint of canonicalisation (ordering, flattening and folding,
    rules that apply where they would not nest activations)."""
    stack: list[tuple[Expr, Op | None]] = [(e, None)]
    while stack:
        n, parent = stack.pop()
        o = n.op
        stack.extend((a, o) for a in n.args)
        if o.commutative and not o.associative and order_key(n.args[1]) < order_key(n.args[0]):
            raise ExprSearchError(f"verify: commutative operands out of order in {n}")
        under = parent is not None and parent.is_activation
        if parent is not None and under and o.is_activation:
            raise ExprSearchError(f"verify: {o.name} directly inside {parent.name} in {e}")
        if o.associative and parent is not o:
            ops = sorted(_operands(o.name, n), key=order_key)
            if n is not fold(o, ops) and n is not fold(o, ops, True):
                raise ExprSearchError(f"verify: {o.name} chain not flattened, sorted and folded in {n}")
            if o.idempotent and any(x is y for x, y in zip(ops, ops[1:])):
                raise ExprSearchError(f"verify: {o.name} chain keeps a repeated operand in {n}")
        for rule in RULES:
            bound = match(rule.lhs, n, {})
            if bound is not None and not blocked(n, rule.rhs(**bound), under):
                raise ExprSearchError(f"verify: rule {rule.name} still applies to {n}")
