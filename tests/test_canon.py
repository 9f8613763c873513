"""Canonical forms: published expressions are fixpoints, equivalent rewrites share one key,
near misses do not, every rewrite rule is an exact identity that shrinks, and canonicalisation
is idempotent and value-preserving on generated expressions."""
from __future__ import annotations

import itertools
import random

import pytest
import torch
from _support import efficientbert_layers, example_lines
from hypothesis import given, settings
from hypothesis import strategies as st

import exprsearch.lang.canon as canon
from exprsearch import Space, sample
from exprsearch.errors import ExprSearchError
from exprsearch.lang.canon import (
    blocked,
    canonical_key,
    canonicalize,
    canonicalize_spec,
    verify_canonical,
)
from exprsearch.lang.expr import WB1, Expr, ModelSpec, X, node, order_key
from exprsearch.lang.numeric import Probe, evaluate, fingerprint, informative
from exprsearch.lang.ops import OPS, Kind
from exprsearch.lang.parsing import parse, parse_spec
from exprsearch.lang.rewrite import RULES, Pat, match, rewrite_once, rules_for
from exprsearch.lang.validity import parse_one, validate

PROBES = (Probe(), Probe(base_ratio=4.0, seed=3), Probe(base_ratio=0.5, seed=5, points=8))


def same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Exactly equal (NaN equal to NaN; -0.0 equal to 0.0)."""
    return a.shape == b.shape and bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


def key(text: str) -> str:
    return canonical_key(parse_one(text))


@pytest.fixture
def fresh_memo():
    """Tests that document canonicaliser bugs may leave non-canonical entries in the memo."""
    canon._MEMO.clear()
    yield
    canon._MEMO.clear()


# -- the published architecture ----------------------------------------------------------------

@pytest.mark.parametrize("text", efficientbert_layers())
def test_published_layers_parse_validate_round_trip_and_are_fixpoints(text):
    e = parse(text)
    assert validate(e) is e
    assert str(e) == text and parse(str(e)) is e
    c = canonicalize(e)
    verify_canonical(c)
    assert canonicalize(c) is c
    assert validate(c) is c, "the canonical form of a published layer stays valid"
    if "mul(linear1_2(x,wb1),x)" in text:  # layer 5: only the commutative operands are reordered
        assert str(c) == "linear1_2(relu(mul(x,linear1_2(x,wb1))),wb2)"
    else:
        assert c is e
    for p in PROBES:
        assert same_values(evaluate(e, p), evaluate(c, p))


def test_published_spec_canonicalises_layerwise():
    spec = parse_spec("\n".join(efficientbert_layers()))
    cs = canonicalize_spec(spec)
    assert isinstance(cs, ModelSpec) and len(cs) == 6
    assert [str(c) for c in cs] == [canonical_key(e) for e in spec]


# -- equivalent rewrites share a key ----------------------------------------------------------

A = "add(x,tanh(x))"
B = "gelu(x)"
EQUIVALENT = [
    ["max(x,tanh(x))", "max(tanh(x),x)"],
    ["linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)", "linear2_2(gelu(linear2_2(max(tanh(x),x),wb1)),wb2)"],
    ["linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)", "linear1_2(relu(mul(x,linear1_2(x,wb1))),wb2)"],
    [f"relu(relu({A}))", f"relu({A})", f"relu(relu(relu({A})))"],
    [f"max({A},{A})", A, f"min({A},{A})", f"max(min({A},{A}),{A})"],
    [f"mul({A},{A})", f"square({A})", f"square(neg({A}))", f"mul(neg({A}),neg({A}))"],
    [f"square(relu({A}))", f"sqrelu({A})", f"mul(relu({A}),relu({A}))", f"mul(relu(relu({A})),relu({A}))"],
    [f"neg(neg({A}))", A],
    [f"sqrt_abs(neg({A}))", f"sqrt_abs({A})"],
    [f"relu(sigmoid({A}))", f"sigmoid({A})"],
    [f"relu(square({A}))", f"square({A})", f"relu(mul({A},{A}))"],
    [f"relu(sqrt_abs({A}))", f"sqrt_abs({A})"],
    [f"max({A},relu({A}))", f"max(relu({A}),{A})", f"relu({A})"],
    [f"min({A},relu({A}))", f"min(relu({A}),{A})", A],
    ["linear1_2(relu(linear1_2(mul(x,add(x,tanh(x))),wb1)),wb2)",
     "linear1_2(relu(linear1_2(mul(add(tanh(x),x),x),wb1)),wb2)"],
]


# Sign identities among the extension ops are left to the fingerprint (rules for them do not join
# with neg(neg(a)) -> a; see exprsearch/lang/rewrite.py): the Deduper merges these groups numerically.
DEDUP_EQUIVALENT = [
    [f"sub({A},neg({B}))", f"add({A},{B})", f"add({B},{A})", f"sub({B},neg({A}))"],
    [f"add({A},neg({B}))", f"add(neg({B}),{A})", f"sub({A},{B})", f"neg(sub({B},{A}))"],
    [f"mul(neg({A}),neg({B}))", f"mul({B},{A})"],
    [f"max(neg({A}),neg({B}))", f"neg(min({B},{A}))"],
    [f"min(neg({A}),neg({B}))", f"neg(max({A},{B}))"],
    ["sub(add(x,tanh(x)),neg(gelu(x)))", "add(add(x,tanh(x)),gelu(x))", "sub(gelu(x),neg(add(x,tanh(x))))"],
]


@pytest.mark.parametrize("group", DEDUP_EQUIVALENT, ids=lambda g: g[0])
def test_sign_identities_merge_in_the_deduper(group):
    from exprsearch.lang.dedup import Deduper
    dd = Deduper()
    results = [dd.add(parse_one(t)) for t in group]
    assert len({r.key for r in results}) == 1
    assert results[0].is_new and not any(r.is_new for r in results[1:])


def _chains(op: str, items: list[str]) -> list[str]:
    """Every order and every association of op over items."""
    def assoc(xs: tuple[str, ...]) -> list[str]:
        if len(xs) == 1:
            return [xs[0]]
        return [f"{op}({l},{r})" for i in range(1, len(xs))
                for l in assoc(xs[:i]) for r in assoc(xs[i:])]
    return sorted({t for perm in itertools.permutations(items) for t in assoc(perm)})


CHAIN_ITEMS = [["x", "tanh(x)", "gelu(x)"], ["x", "tanh(x)", "gelu(x)", "sigmoid(mul(x,x))"],
               ["linear1_2(x,wb1)", "x", "elu(x)"]]


@pytest.mark.parametrize("group", EQUIVALENT, ids=lambda g: g[0])
def test_equivalent_rewrites_share_one_key(group):
    keys = {key(t) for t in group}
    assert len(keys) == 1, keys
    for t in group:
        for p in PROBES:
            assert same_values(evaluate(parse_one(t), p), evaluate(parse_one(group[0]), p))


@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("items", CHAIN_ITEMS, ids=lambda i: str(len(i)))
def test_max_min_chains_in_any_order_and_association_share_one_key(op, items):
    texts = _chains(op, items)
    assert len(texts) >= 12
    keys = {key(t) for t in texts}
    assert len(keys) == 1, keys
    (k,) = keys
    assert k.count(op + "(") == len(items) - 1  # one flattened chain, nothing dropped
    # a chain with a repeated element drops the repeat (idempotence)
    assert key(f"{op}({texts[0]},{items[0]})") == k


@pytest.mark.parametrize("op, items", [("max", ["x", "relu(x)", "tanh(x)"]),
                                       ("min", ["x", "relu(x)", "tanh(x)"]),
                                       ("max", ["neg(x)", "neg(tanh(x))", "sigmoid(x)"]),
                                       ("min", ["neg(x)", "neg(tanh(x))", "sigmoid(x)"])],
                         ids=["max-relu", "min-relu", "max-neg", "min-neg"])
def test_chain_members_that_form_a_redex_share_one_key(fresh_memo, op, items):
    keys = {key(t) for t in _chains(op, items)}
    assert len(keys) == 1, keys


@pytest.mark.parametrize("items", [("x", "tanh(x)", "sigmoid(x)"), ("x", "gelu(x)", "relu(x)", "elu(x)")])
def test_add_chains_in_any_order_and_association_share_one_key(fresh_memo, items):
    # add(add(x,tanh(x)),sigmoid(x)) and add(x,add(sigmoid(x),tanh(x))) are one candidate
    keys = set()
    for perm in itertools.permutations(items):
        left, right = perm[0], perm[-1]
        for mid in ("left", "right"):
            acc = left
            rest = list(perm[1:])
            if mid == "left":
                for t in rest:
                    acc = f"add({acc},{t})"
            else:
                acc = rest[-1]
                for t in reversed([left] + rest[:-1]):
                    acc = f"add({t},{acc})"
            keys.add(key(acc))
    assert len(keys) == 1, keys
    assert key("add(add(x,tanh(x)),sigmoid(x))") == key("add(x,add(sigmoid(x),tanh(x)))")
    assert key("add(x,add(tanh(x),tanh(x)))") != key("add(x,tanh(x))")  # add is not idempotent


def test_valid_reference_ffn_with_a_three_way_max_canonicalises(fresh_memo):
    e = parse("linear1_1(gelu(linear1_1(max(x,max(relu(x),tanh(x))),wb1)),wb2)")
    assert canonical_key(e) == "linear1_1(gelu(linear1_1(max(relu(x),tanh(x)),wb1)),wb2)"


def test_canonical_key_does_not_depend_on_history(fresh_memo, verify_off):
    a = parse_one("max(max(x,relu(x)),tanh(x))")
    b = parse_one("max(x,max(relu(x),tanh(x)))")
    first = canonical_key(a)
    canon._MEMO.clear()
    canonical_key(b)
    assert canonical_key(a) == first


# -- near misses keep their own keys ------------------------------------------------------------

NEAR_MISSES = [
    ("max(x,tanh(x))", "min(x,tanh(x))"),
    ("linear1_2(gelu(linear1_2(x,wb1)),wb2)", "linear2_2(gelu(linear2_2(x,wb1)),wb2)"),
    ("linear1_2(gelu(linear1_2(x,wb1)),wb2)", "linear1_3(gelu(linear1_3(x,wb1)),wb2)"),
    ("leaky_relu(x)", "relu(x)"),
    ("max(x,relu(tanh(x)))", "max(x,tanh(x))"),
    ("relu(tanh(x))", "tanh(x)"),
    ("sub(x,tanh(x))", "sub(tanh(x),x)"),
    ("square(tanh(x))", "sqrelu(tanh(x))"),
    ("sqrt_abs(x)", "sqrt_abs(relu(x))"),
    ("neg(max(x,tanh(x)))", "max(neg(x),neg(tanh(x)))"),
    ("max(x,tanh(x))", "max(x,tanh(tanh(x)))"),
    ("mul(x,add(x,tanh(x)))", "add(x,mul(x,tanh(x)))"),
    ("gelu(x)", "swish(x)"),
    ("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)", "linear1_2(relu(mul(linear1_2(x,wb1),tanh(x))),wb2)"),
]


@pytest.mark.parametrize("a, b", NEAR_MISSES, ids=[f"{a} vs {b}" for a, b in NEAR_MISSES])
def test_near_misses_do_not_share_a_key(a, b):
    ea, eb = parse_one(a), parse_one(b)
    assert canonical_key(ea) != canonical_key(eb)
    if sorted(n.name for n in ea.linears()) == sorted(n.name for n in eb.linears()):
        assert not same_values(evaluate(ea), evaluate(eb)), "the pair really differs"


# -- every rewrite rule: exact identity, strictly shrinking ----------------------------------

UNARY = [o.name for o in OPS.values() if o.kind is Kind.UNARY]
BINARY = [o.name for o in OPS.values() if o.kind is Kind.BINARY]


def random_tree(rng: random.Random, depth: int) -> Expr:
    """A small random tree over x (sometimes with a wb1 linear, to mix widths)."""
    r = rng.random()
    if depth == 0 or r < 0.2:
        return X
    if r < 0.3:
        return node(rng.choice(["linear1_2", "linear1_3", "linear2_1"]), random_tree(rng, depth - 1), WB1)
    if r < 0.7:
        return node(rng.choice(UNARY), random_tree(rng, depth - 1))
    return node(rng.choice(BINARY), random_tree(rng, depth - 1), random_tree(rng, depth - 1))


def instantiate(p: Pat, rng: random.Random, b: dict) -> Expr:
    """A random expression matching pattern ``p`` (metavariables: random small trees)."""
    if p.var is not None:
        if p.var not in b:
            for _ in range(1000):
                t = random_tree(rng, rng.randint(0, 3))
                if p.where is None or p.where(t):
                    break
            else:
                raise AssertionError(f"could not satisfy the guard of {p.var}")
            b[p.var] = t
        return b[p.var]
    if p.opvar is not None:
        if p.opvar not in b:
            b[p.opvar] = rng.choice([o for o in OPS.values() if o.kind is p.kind and p.op_where(o)])
        o = b[p.opvar]
    else:
        o = OPS[p.op]
    return node(o, *(instantiate(a, rng, b) for a in p.args))


def test_rules_are_well_formed():
    names = [r.name for r in RULES]
    assert len(names) == len(set(names)) >= 12
    for r in RULES:
        assert "->" in r.law
        assert r.roots and all(r in rules_for(root) for root in r.roots)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_rule_is_an_exact_identity_that_shrinks(rule):
    rng = random.Random(len(rule.name) * 7919)
    seen = set()
    for _ in range(60):
        lhs = instantiate(rule.lhs, rng, {})
        bound = match(rule.lhs, lhs, {})
        assert bound is not None, f"{rule.name}: pattern does not match its own instance {lhs}"
        rhs = rule.rhs(**bound)
        seen.add(lhs)
        assert order_key(rhs) < order_key(lhs), (rule.name, str(lhs), str(rhs))  # size, then text
        for p in PROBES:
            assert same_values(evaluate(lhs, p), evaluate(rhs, p)), (rule.name, str(lhs), str(rhs))
        assert rewrite_once(lhs) is not None
    assert len(seen) > 10, "random instances are diverse"


# Every rule's random instances canonicalise like their right-hand side (the set is confluent),
# except where a rewrite would nest an activation directly inside one: the canonicaliser does not
# make it (a valid expression stays valid), so two forms may stay apart there -- both fixpoints
# with a rule left unapplied (the fingerprint merges them).
JOINABLE = tuple(r.name for r in RULES)


def nested_activations(e: Expr) -> int:
    return sum(n.op.is_activation and n.args[0].op.is_activation for n in e.walk() if n.args)


def has_blocked_site(e: Expr) -> bool:
    return any(match(r.lhs, n, {}) is not None for n in e.walk() for r in RULES)


@pytest.mark.parametrize("name", JOINABLE)
def test_applying_a_rule_keeps_the_canonical_form(name):
    (rule,) = [r for r in RULES if r.name == name]
    rng = random.Random(len(name) * 104729)
    joined = 0
    for _ in range(150):
        lhs = instantiate(rule.lhs, rng, {})
        rhs = rule.rhs(**match(rule.lhs, lhs, {}))
        cl, cr = canonicalize(lhs), canonicalize(rhs)
        if cl is cr:
            joined += 1
            continue
        assert has_blocked_site(cl) or has_blocked_site(cr), (str(lhs), str(rhs))
        assert nested_activations(cl) <= nested_activations(lhs) and nested_activations(cr) <= nested_activations(rhs)
        assert same_values(evaluate(cl), evaluate(cr))
    assert joined >= 75  # most instances still join


# -- canonicalisation on generated expressions -------------------------------------------------

REF_SPACE = Space()
EXT_SPACE = Space(unary=tuple(o.name for o in OPS.values() if o.kind is Kind.UNARY),
                  binary=tuple(o.name for o in OPS.values() if o.kind is Kind.BINARY),
                  max_depth=6, max_size=8)


def scramble(e: Expr, rng: random.Random, full: bool = True) -> Expr:
    """A random expression equal to ``e`` by identities the canonicaliser knows: operand swaps,
    f(a,a) for idempotent f, relu over nonnegative terms, and (``full``) neg(neg(a)) and
    square(a) = mul(a, a).  (Sign identities between add/sub/neg are left to the fingerprint.)"""
    args = [scramble(a, rng, full) if a.kind is not Kind.SLOT else a for a in e.args]
    o = e.op
    if o.commutative and rng.random() < 0.5:
        args.reverse()
    n = node(o, *args)
    if n.kind is Kind.SLOT:
        return n
    moves = [lambda: node(rng.choice(["max", "min"]), n, n)]
    if o.nonneg:
        moves.append(lambda: node("relu", n))
    if full:
        moves.append(lambda: node("neg", node("neg", n)))
        if o.name == "square":
            moves.append(lambda: node("mul", args[0], args[0]))
    return rng.choice(moves)() if rng.random() < 0.3 else n


@settings(max_examples=400)
@given(st.integers(0, 2**31), st.sampled_from(["ref", "ext"]))
def test_canonicalisation_is_idempotent_and_preserves_values(seed, which):
    rng = random.Random(seed)
    sp = REF_SPACE if which == "ref" else EXT_SPACE
    e = sample(sp, rng)
    c = canonicalize(e)
    verify_canonical(c)
    canon._MEMO.clear()  # idempotence and determinism without the memo's help
    assert canonicalize(c) is c
    canon._MEMO.clear()
    assert canonicalize(e) is c
    free = canon._canon(e)  # the rules' fixpoint shrinks; an activation it nests is written max(u, u)
    assert free.size <= e.size and c in (free, canon._unnest(free, False))
    assert str(c) == canonical_key(e)
    reassociated = any(n.op.name == "add" for n in e.walk())  # add chains are re-associated: rounding only
    for p in PROBES[:2]:
        u, v = evaluate(e, p), evaluate(c, p)
        assert same_values(u, v) or (reassociated and torch.allclose(u, v, rtol=1e-12, atol=1e-12, equal_nan=True)), \
            (str(e), str(c))
    if informative(evaluate(e)):  # saturated values are hashed with the text (dedup fingerprints c)
        assert fingerprint(e) == fingerprint(c)
    # equivalent scrambles of e canonicalise to the same node
    for _ in range(3):
        s = scramble(e, rng, full=(which == "ref"))
        assert canonicalize(s) is c, (str(e), str(s), str(canonicalize(s)))


def test_examples_file_canonical_forms():
    keys = [canonical_key(parse(t)) for t in example_lines()]
    assert keys[1] == keys[2] and keys[4] == keys[5]
    assert len(set(keys)) == len(keys) - 2  # the distributivity pair needs dedup, not rules


def test_verify_canonical_rejects_non_canonical_forms():
    for text in ["max(tanh(x),x)", "relu(relu(x))", "max(max(x,gelu(x)),max(tanh(x),sigmoid(x)))",
                 "mul(x,x)", "add(tanh(x),x)"]:
        with pytest.raises(ExprSearchError, match="verify"):
            verify_canonical(parse_one(text))
    verify_canonical(parse_one("max(max(x,gelu(x)),tanh(x))"))
