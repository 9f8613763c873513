"""AST --> canonical AST: the rewrite rules of ``rewrite.py`` driven to a fixpoint.

Input: any expression.  Output: its canonical form; ``str`` of it is the candidate's identity
(store key, cache key).  Invariants (checked by ``verify_canonical``, always on in tests):
operands of commutative operators are in ``order_key`` order, chains of associative operators
(add, max, min) are flattened across nesting, sorted and folded -- so
``add(add(x,tanh(x)),sigmoid(x))`` and ``add(x,add(sigmoid(x),tanh(x)))`` are one candidate --
and no rule applies anywhere, except where its result would nest an activation directly inside
an activation (``sigmoid(max(x,relu(x)))`` stays: ``sigmoid(relu(x))`` breaks a validity rule).
So the canonical form of a valid expression is valid, and it re-parses: it never nests deeper
than its input (chains are folded left, or -- where the left fold would nest deeper than the
parser reads -- by depth, two shallowest first).  Canonicalisation only uses identities of real
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
'sigmoid(max(x,relu(x)))'
"""
from __future__ import annotations

import heapq
import os

from exprsearch.errors import ExprSearchError

from .dsl_errors import MAX_NESTING
from .expr import Expr, ModelSpec, node, order_key
from .ops import Op
from .rewrite import RULES, match, rules_for

__all__ = ["canonicalize", "canonical_key", "canonicalize_spec", "verify_canonical", "blocked", "VERIFY"]

VERIFY = os.environ.get("EXPRSEARCH_VERIFY", "") not in ("", "0")  # tests turn this on
_MEMO: dict = {}  # node -> canonical node; (node, context) -> canonical node in other contexts
_MEMO_LIMIT = 500_000

Context = tuple[bool, bool]  # (the parent is an activation, chains are folded by depth everywhere)


def blocked(n: Expr, r: Expr, under_activation: bool) -> bool:
    """Whether rewriting ``n`` to ``r`` would nest an activation directly inside an activation
    that ``n`` did not nest (below an activation parent when ``under_activation``).

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


def _chain(o: Op, flat: list[Expr], ctx: Context) -> tuple[Expr, bool]:
    """Canonical chain of an associative-commutative operator: apply the rules to every *pair*
    of operands (any two are neighbours up to AC) until none fires, then sort, dedupe
    (idempotent ops) and fold.  Below an activation, a rewrite or a dedupe that would leave one
    activation alone is not made (it would nest): then the second value is True."""
    under, kept_apart = ctx[0], False
    changed = True
    while changed:
        changed = False
        for i in range(len(flat)):
            for j in range(i + 1, len(flat)):
                a, b = sorted((flat[i], flat[j]), key=order_key)
                r = _rewrite(node(o, a, b), False)
                if r is not None:
                    r = _canon(r, (False, ctx[1]))
                    rest = [x for k, x in enumerate(flat) if k not in (i, j)]
                    if under and not rest and r.op.is_activation:
                        kept_apart = True  # the chain would be one activation right below another
                        continue
                    flat = rest + _operands(o.name, r)
                    changed = True
                    break
            if changed:
                break
    flat.sort(key=order_key)
    if o.idempotent:
        kept = [x for i, x in enumerate(flat) if i == 0 or x is not flat[i - 1]]
        if under and len(kept) == 1 and kept[0].op.is_activation:
            kept, kept_apart = flat[:2], True
        flat = kept
    return fold(o, flat, ctx[1]), kept_apart


def _rewrite(n: Expr, under_activation: bool) -> Expr | None:
    """The first rule's rewrite of ``n`` at its root that does not nest activations, or None."""
    for rule in rules_for(n.op.name):
        bound = match(rule.lhs, n, {})
        if bound is not None:
            r = rule.rhs(**bound)
            if not blocked(n, r, under_activation):
                return r
    return None


def _canon(e: Expr, ctx: Context = (False, False)) -> Expr:
    key = e if ctx == (False, False) else (e, ctx)
    hit = _MEMO.get(key)
    if hit is not None:
        return hit
    if not e.args:
        result = e
    else:
        inner = (e.op.is_activation, ctx[1])
        args = [_canon(a, inner) for a in e.args]
        o = e.op
        if o.associative:
            n, kept_apart = _chain(o, [x for a in args for x in _operands(o.name, a)], ctx)
            if kept_apart:  # below an activation: copies of one operand that is no activation there
                alone = {_canon(x, ctx) for a in e.args for x in _operands(o.name, a)}
                if o.idempotent and len(alone) == 1 and not next(iter(alone)).op.is_activation:
                    n = next(iter(alone))
        else:
            if o.commutative and order_key(args[1]) < order_key(args[0]):
                args.reverse()
            n = node(o, *args)
        r = _rewrite(n, ctx[0]) if n.args else None
        result = n if r is None else _canon(r, ctx)
    if len(_MEMO) > _MEMO_LIMIT:
        _MEMO.clear()
    _MEMO[key] = result
    _MEMO[result if ctx == (False, False) else (result, ctx)] = result
    return result


def canonicalize(e: Expr) -> Expr:
    """The canonical form of ``e`` (memoised per node; cheap on repeated subtrees)."""
    result = _canon(e)
    if result.depth > MAX_NESTING:  # left folds nest deeper than the parser reads: fold by depth
        result = _canon(e, (False, True))
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
        if o.associative and parent is not o:
            ops = sorted(_operands(o.name, n), key=order_key)
            if n is not fold(o, ops) and n is not fold(o, ops, True):
                raise ExprSearchError(f"verify: {o.name} chain not flattened, sorted and folded in {n}")
            if o.idempotent and any(x is y for x, y in zip(ops, ops[1:])) and \
                    not (under and len(ops) == 2 and ops[0].op.is_activation):
                raise ExprSearchError(f"verify: {o.name} chain keeps a repeated operand in {n}")
        for rule in RULES:
            bound = match(rule.lhs, n, {})
            if bound is not None and not blocked(n, rule.rhs(**bound), under):
                raise ExprSearchError(f"verify: rule {rule.name} still applies to {n}")
