"""Canonical forms are valid and re-parse (issue 31, item 5): a spec copied from ``show`` (the
canonical text) is accepted by ``eval``; an activation the rewrite rules would leave directly
inside an activation is written ``neg(neg(u))`` (one valid form per class); chains never nest
deeper than the parser reads; a constant wb1 input is a validity error with a caret, not an
accepted FFN."""
from __future__ import annotations

import random

import pytest

import exprsearch.lang.canon as canon
from exprsearch import Space, sample
from exprsearch.errors import UnreachableInputError
from exprsearch.lang.canon import canonicalize, verify_canonical
from exprsearch.lang.dsl_errors import MAX_NESTING
from exprsearch.lang.numeric import Probe, evaluate
from exprsearch.lang.ops import OPS, Kind
from exprsearch.lang.parsing import parse, parse_spec
from exprsearch.lang.validity import is_valid, parse_one
from exprsearch.search.store import row_spec

EXT = Space(unary=tuple(o.name for o in OPS.values() if o.kind is Kind.UNARY),
            binary=tuple(o.name for o in OPS.values() if o.kind is Kind.BINARY), max_depth=6, max_size=8)


def ffn(body: str) -> str:
    return f"linear1_1(gelu(linear1_1({body},wb1)),wb2)"


@pytest.mark.parametrize("body, canonical", [
    ("sigmoid(max(x,relu(x)))", "sigmoid(neg(neg(relu(x))))"),                 # not sigmoid(relu(x))
    ("tanh(max(relu(x),relu(x)))", "tanh(neg(neg(relu(x))))"),
    ("elu(min(tanh(x),max(tanh(x),tanh(x))))", "elu(neg(neg(tanh(x))))"),
    ("swish(neg(neg(tanh(x))))", "swish(neg(neg(tanh(x))))"),                # one form for the class
    ("mul(sigmoid(x),sigmoid(x))", "sqrelu(neg(neg(sigmoid(x))))"),            # not sqrelu(sigmoid(x))
    ("sigmoid(mul(relu(x),relu(x)))", "sigmoid(neg(neg(sqrelu(x))))"),          # not sigmoid(sqrelu(x))
    ("sigmoid(max(square(square(x)),square(square(x))))", "sigmoid(neg(neg(sqrelu(square(x)))))"),
    ("mul(x,max(relu(x),x))", "mul(x,relu(x))"),                               # no activation above: as before
])
def test_an_activation_the_rules_would_nest_is_written_neg_neg_u(body, canonical):
    e = parse(ffn(body))
    c = canonicalize(e)
    assert str(c) == ffn(canonical)
    assert is_valid(c) and parse(str(c)) is c
    for p in (Probe(), Probe(base_ratio=4.0, seed=3)):
        assert bool((evaluate(e, p) == evaluate(c, p)).all())


@pytest.mark.parametrize("space", [Space(), EXT], ids=["reference", "extended"])
def test_every_sampled_canonical_form_is_valid_and_reparses(space):
    rng = random.Random(31)
    for _ in range(3000):
        e = sample(space, rng)
        c = canonicalize(e)
        assert is_valid(c), (str(e), str(c))
        assert parse(str(c)) is c
        assert canonicalize(c) is c


def test_a_spec_copied_from_show_is_accepted_by_eval():
    spec = parse_spec(f"{ffn('sigmoid(max(x,relu(x)))')}\n{ffn('mul(sigmoid(x),sigmoid(x))')}")
    shown = str(canon.canonicalize_spec(spec))
    assert [str(e) for e in parse_spec(shown)] == [str(canonicalize(e)) for e in spec]


def test_a_sub_of_equal_terms_feeding_the_wb1_linear_is_rejected_with_a_caret():
    with pytest.raises(UnreachableInputError) as err:
        parse(ffn("sub(max(x,x),x)"))
    text = str(err.value)
    assert "'sub(max(x,x),x)' is zero" in text
    assert "^" * len("sub(max(x,x),x)") in text
    assert is_valid(parse_one(ffn("sub(max(x,tanh(x)),x)")))  # not constant: still valid


def balanced_add(n: int) -> str:
    items = [("x" if i % 2 else "tanh(x)") for i in range(n)]
    while len(items) > 1:
        items = [f"add({a},{b})" for a, b in zip(items[::2], items[1::2])] + (items[-1:] if len(items) % 2 else [])
    return items[0]


@pytest.mark.parametrize("leaves", [120, 256, 1000])
def test_long_chains_canonicalise_to_forms_that_reparse(leaves):
    e = parse(ffn(balanced_add(leaves)))
    c = canonicalize(e)
    verify_canonical(c)
    assert c.depth <= max(e.depth, MAX_NESTING)
    assert parse(str(c)) is c and canonicalize(c) is c
    assert row_spec(f"[{c}]") is not None  # the store reads its own canonical text back
    assert torch_close(evaluate(e), evaluate(c))


def test_short_chains_still_fold_left():
    assert str(canonicalize(parse_one("add(add(x,tanh(x)),add(sigmoid(x),gelu(x)))"))) == \
        "add(add(add(x,gelu(x)),sigmoid(x)),tanh(x))"


def torch_close(a, b) -> bool:
    import torch
    return bool(torch.allclose(a, b, rtol=1e-9, atol=1e-9))


def test_equal_inputs_under_an_activation_share_one_canonical_form():
    forms = ["sigmoid(max(x,relu(x)))", "sigmoid(relu(x))", "sigmoid(max(relu(x),x))", "sigmoid(neg(neg(relu(x))))",
             "sigmoid(max(relu(x),max(x,relu(x))))", "sigmoid(min(relu(x),max(relu(x),relu(x))))"]
    keys = {str(canonicalize(parse_one(ffn(b)))) for b in forms}
    assert keys == {ffn("sigmoid(neg(neg(relu(x))))")}
