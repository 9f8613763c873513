"""AST --> canonical AST: the rewrite rules of ``rewrite.py`` driven to a fixpoint.

Input: any expression.  Output: its canonical form; ``str`` of it is the candidate's identity
(store key, cache key).  Invariants (checked by ``verify_canonical``, always on in tests):
operands of commutative operators are in ``order_key`` order, chains of associative operators
(add, max, min) are flattened across nesting, sorted and left-folded -- so
``add(add(x,tanh(x)),sigmoid(x))`` and ``add(x,add(sigmoid(x),tanh(x)))`` are one candidate --
and no rule applies anywhere.  Canonicalisation only uses identities of real arithmetic: the
canonical form computes what the input does, exactly for max/min chains and the rules, up to
floating-point rounding where an add chain is re-associated (mul chains are not flattened: the
``mul(a, a) -> square(a)`` rule would not stay confluent; the fingerprint merges them).  Equalities the rules miss are
found by ``dedup.py`` (fingerprint + sympy).

>>> from .validity import parse_one
>>> str(canonicalize(parse_one("max(tanh(x), max(x, tanh(x)))")))
'max(x,tanh(x))'
>>> canonical_key(parse_one("mul(gelu(x),gelu(x))")) == canonical_key(parse_one("square(gelu(x))"))
True
>>> str(canonicalize(parse_one("add(x,add(sigmoid(x),tanh(x)))")))
'add(add(x,sigmoid(x)),tanh(x))'
"""
from __future__ import annotations

import os

from exprsearch.errors import ExprSearchError

from .expr import Expr, ModelSpec, node, order_key
from .rewrite import RULES, match, rewrite_once

__all__ = ["canonicalize", "canonical_key", "canonicalize_spec", "verify_canonical", "VERIFY"]

VERIFY = os.environ.get("EXPRSEARCH_VERIFY", "") not in ("", "0")  # tests turn this on
_MEMO: dict[Expr, Expr] = {}
_MEMO_LIMIT = 500_000


def _operands(op_name: str, e: Expr) -> list[Expr]:
    """The operands of a (canonical, left-folded) chain of one associative operator."""
    out: list[Expr] = []
    while e.op.name == op_name:
        out.append(e.args[1])
        e = e.args[0]
    out.append(e)
    return out


def _chain(o, flat: list[Expr]) -> Expr:
    """Canonical chain of an associative-commutative operator: apply the rules to every *pair*
    of operands (any two are neighbours up to AC) until none fires, then sort, dedupe
    (idempotent ops) and left-fold."""
    changed = True
    while changed:
        changed = False
        for i in range(len(flat)):
            for j in range(i + 1, len(flat)):
                a, b = sorted((flat[i], flat[j]), key=order_key)
                r = rewrite_once(node(o, a, b))
                if r is not None:
                    r = _canon(r)
                    flat = [x for k, x in enumerate(flat) if k not in (i, j)] + _operands(o.name, r)
                    changed = True
                    break
            if changed:
                break
    flat.sort(key=order_key)
    if o.idempotent:
        flat = [x for i, x in enumerate(flat) if i == 0 or x is not flat[i - 1]]
    acc = flat[0]
    for x in flat[1:]:
        acc = node(o, acc, x)
    return acc


def _canon(e: Expr) -> Expr:
    hit = _MEMO.get(e)
    if hit is not None:
        return hit
    if not e.args:
        result = e
    else:
        args = [_canon(a) for a in e.args]
        o = e.op
        if o.associative:
            n = _chain(o, [x for a in args for x in _operands(o.name, a)])
        else:
            if o.commutative and order_key(args[1]) < order_key(args[0]):
                args.reverse()
            n = node(o, *args)
        r = rewrite_once(n) if n.args else None
        result = n if r is None else _canon(r)
    if len(_MEMO) > _MEMO_LIMIT:
        _MEMO.clear()
    _MEMO[e] = result
    _MEMO[result] = result
    return result


def canonicalize(e: Expr) -> Expr:
    """The canonical form of ``e`` (memoised per node; cheap on repeated subtrees)."""
    result = _canon(e)
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
    """Raise if ``e`` is not a fixpoint of canonicalisation (ordering, flattening, rules)."""
    for n in e.walk():
        o = n.op
        if o.commutative and not o.associative and order_key(n.args[1]) < order_key(n.args[0]):
            raise ExprSearchError(f"verify: commutative operands out of order in {n}")
        if o.associative:
            ops = _operands(o.name, n)[::-1]
            if any(order_key(y) < order_key(x) for x, y in zip(ops, ops[1:])) or n.args[1].op is o:
                raise ExprSearchError(f"verify: {o.name} chain not flattened and sorted in {n}")
        for rule in RULES:
            if match(rule.lhs, n, {}) is not None:
                raise ExprSearchError(f"verify: rule {rule.name} still applies to {n}")
