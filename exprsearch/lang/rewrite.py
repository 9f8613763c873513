"""Rewrite rules as data, and the pattern matcher they need.

Input: canonical-ordered AST nodes.  Output: a rewritten node or ``None``.  Invariant: every rule
is an exact identity in IEEE arithmetic (so rewriting never changes what a model computes) and
strictly decreases ``order_key`` -- size, then text -- (so the fixpoint driver in ``canon.py``
terminates); a test checks both for every rule on random instances.  ``law`` is the rule's algebra, shown by docs and the REPL.

>>> from .validity import parse_one
>>> rewrite_once(parse_one("max(tanh(x),tanh(x))")).__str__()
'tanh(x)'
>>> [r.law for r in RULES][:3]
['u(u(a)) -> u(a)   for idempotent unary u', 'relu(a) -> a   when a >= 0', 'f(a, a) -> a   for idempotent binary f']
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .expr import Expr, node
from .ops import OPS, Kind, Op

__all__ = ["Pat", "Rule", "RULES", "P", "V", "OpVar", "match", "rewrite_once", "rules_for"]

Bindings = dict[str, "Expr | Op"]


@dataclass(frozen=True)
class Pat:
    """A pattern: a fixed operator over sub-patterns, an operator variable, or a subtree variable."""

    op: str | None = None                       # fixed operator name
    args: tuple["Pat", ...] = ()
    var: str | None = None                      # binds any subtree (same name => same subtree)
    where: Callable[[Expr], bool] | None = None  # guard on the bound subtree
    opvar: str | None = None                    # binds an operator of ``kind`` satisfying ``op_where``
    kind: Kind | None = None
    op_where: Callable[[Op], bool] | None = None


def V(name: str, where: Callable[[Expr], bool] | None = None) -> Pat:
    """A subtree variable, optionally guarded."""
    return Pat(var=name, where=where)


def OpVar(name: str, kind: Kind, where: Callable[[Op], bool]) -> Callable[..., Pat]:
    """An operator variable: ``OpVar("u", Kind.UNARY, lambda o: o.idempotent)(a)``."""
    return lambda *args: Pat(opvar=name, kind=kind, op_where=where, args=args)


class _PatternBuilder:
    """``P.max(a, b)`` builds ``Pat(op="max", ...)``; names are checked against the op table."""

    def __getattr__(self, name: str) -> Callable[..., Pat]:
        if name not in OPS:
            raise AttributeError(f"no operator {name!r} in the op table")
        return lambda *args: Pat(op=name, args=args)


P = _PatternBuilder()


def match(p: Pat, e: Expr, b: Bindings) -> Bindings | None:
    """Bindings extending ``b`` under which ``p`` matches ``e`` (commutative ops: either order)."""
    if p.var is not None:
        if p.where is not None and not p.where(e):
            return None
        bound = b.get(p.var)
        if bound is None:
            return {**b, p.var: e}
        return b if bound is e else None
    if p.opvar is not None:
        if e.op.kind is not p.kind or not p.op_where(e.op):  # type: ignore[misc]
            return None
        bound = b.get(p.opvar)
        if bound is not None and bound is not e.op:
            return None
        b = {**b, p.opvar: e.op}
    elif p.op != e.op.name:
        return None
    if len(p.args) != len(e.args):
        return None
    orders = [e.args, e.args[::-1]] if e.op.commutative and len(e.args) == 2 else [e.args]
    for args in orders:
        r = b
        for sp, se in zip(p.args, args):
            m = match(sp, se, r)
            if m is None:
                break
            r = m
        else:
            return r
    return None


@dataclass(frozen=True)
class Rule:
    name: str
    law: str                             # the algebra, e.g. "max(a, a) -> a"
    lhs: Pat
    rhs: Callable[..., Expr]             # called with the bindings as keyword arguments

    @property
    def roots(self) -> list[str]:
        """Operator names the left-hand side's root can match (for indexing)."""
        if self.lhs.op is not None:
            return [self.lhs.op]
        return [o.name for o in OPS.values()
                if o.kind is self.lhs.kind and self.lhs.op_where(o)]  # type: ignore[misc]


def _nonneg(e: Expr) -> bool:
    return e.op.nonneg


a, b = V("a"), V("b")
_idem_unary = OpVar("u", Kind.UNARY, lambda o: o.idempotent)
_idem_binary = OpVar("f", Kind.BINARY, lambda o: o.idempotent)

# The rule set is kept confluent (every critical pair joins; tests/test_canon.py checks it on
# random instances): sign-moving rules for neg/sub/add/max/min were left out because they do not
# join with neg(neg(a)) -> a; the fingerprint catches those equalities instead.
RULES: tuple[Rule, ...] = (
    Rule("idempotent-unary", "u(u(a)) -> u(a)   for idempotent unary u",
         _idem_unary(_idem_unary(a)), lambda u, a: node(u, a)),
    Rule("relu-nonneg", "relu(a) -> a   when a >= 0",
         P.relu(V("a", _nonneg)), lambda a: a),
    Rule("idempotent-binary", "f(a, a) -> a   for idempotent binary f",
         _idem_binary(a, a), lambda f, a: a),
    Rule("mul-self", "mul(a, a) -> square(a)", P.mul(a, a), lambda a: node("square", a)),
    Rule("square-relu", "square(relu(a)) -> sqrelu(a)   (Primer)",
         P.square(P.relu(a)), lambda a: node("sqrelu", a)),
    Rule("square-nonneg", "square(a) -> sqrelu(a)   when a >= 0",
         P.square(V("a", _nonneg)), lambda a: node("sqrelu", a)),
    Rule("sqrelu-relu", "sqrelu(relu(a)) -> sqrelu(a)", P.sqrelu(P.relu(a)), lambda a: node("sqrelu", a)),
    Rule("square-neg", "square(neg(a)) -> square(a)", P.square(P.neg(a)), lambda a: node("square", a)),
    Rule("sqrt_abs-neg", "sqrt_abs(neg(a)) -> sqrt_abs(a)",
         P.sqrt_abs(P.neg(a)), lambda a: node("sqrt_abs", a)),
    Rule("neg-neg", "neg(neg(a)) -> a", P.neg(P.neg(a)), lambda a: a),
    Rule("max-relu", "max(a, relu(a)) -> relu(a)", P.max(a, P.relu(a)), lambda a: node("relu", a)),
    Rule("min-relu", "min(a, relu(a)) -> a", P.min(a, P.relu(a)), lambda a: a),
)

_BY_ROOT: dict[str, list[Rule]] = {}
for _r in RULES:
    for _name in _r.roots:
        _BY_ROOT.setdefault(_name, []).append(_r)


def rules_for(op_name: str) -> list[Rule]:
    """The rules whose left-hand side can match a node with this root operator."""
    return _BY_ROOT.get(op_name, [])


def rewrite_once(e: Expr) -> Expr | None:
    """Apply the first matching rule at the root of ``e``; ``None`` if none matches."""
    for rule in _BY_ROOT.get(e.op.name, ()):
        bound = match(rule.lhs, e, {})
        if bound is not None:
            return rule.rhs(**bound)
    return None
