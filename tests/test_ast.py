"""The interned, immutable AST: identity, reconstruction, printing, pickling, limits, specs."""
from __future__ import annotations

import copy
import gc
import pickle
import weakref

import pytest
from _support import STANDARD_FFN, efficientbert_layers
from hypothesis import given, settings
from hypothesis import strategies as st

from exprsearch.errors import (
    ArityError,
    DSLError,
    NestingTooDeepError,
    SlotTypeError,
    UnknownNameError,
)
from exprsearch.lang import expr as expr_mod
from exprsearch.lang.expr import (
    MAX_DEPTH,
    WB1,
    WB2,
    WB3,
    Binary,
    Expr,
    Linear,
    ModelSpec,
    Slot,
    Unary,
    Var,
    X,
    node,
    order_key,
)
from exprsearch.lang.ops import OPS, Kind
from exprsearch.lang.parsing import parse, parse_spec
from exprsearch.lang.syntax import parse_layers

UNARY = [o.name for o in OPS.values() if o.kind is Kind.UNARY]
BINARY = [o.name for o in OPS.values() if o.kind is Kind.BINARY]
LINEAR = [o.name for o in OPS.values() if o.kind is Kind.LINEAR]


def ffn(body: str = "gelu", xy: str = "1_1") -> Expr:
    return node(f"linear{xy}", node(body, node(f"linear{xy}", X, WB1)), WB2)


# -- a strategy for random well-typed ASTs over every operator (validity NOT required) --------

def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.builds(node, st.sampled_from(UNARY), children),
        st.builds(node, st.sampled_from(BINARY), children, children),
        st.builds(node, st.sampled_from(LINEAR), children, st.sampled_from([WB1, WB2, WB3])),
    )


well_typed = st.recursive(st.just(X), _extend, max_leaves=24)


def _size_depth(e: Expr) -> tuple[int, int]:
    """Independent recomputation: slots count neither as nodes nor as depth."""
    if e.kind is Kind.SLOT:
        return 0, -1
    if not e.args:
        return 1, 0
    kids = [_size_depth(a) for a in e.args]
    return 1 + sum(s for s, _ in kids), 1 + max(d for _, d in kids)


# -- identity ----------------------------------------------------------------------------------

def test_structurally_equal_nodes_are_the_same_object():
    a = node("max", X, node("tanh", X))
    b = node("max", X, node("tanh", X))
    assert a is b
    assert parse_layers("max(x,tanh(x))")[0] is a
    assert parse_layers("max( x , tanh( x ) )")[0] is a
    assert node(OPS["max"], X, node(OPS["tanh"], X)) is a  # Op or name: same node
    assert hash(a) == hash(b) and a == b
    assert node("max", node("tanh", X), X) is not a        # operand order is structure


def test_class_constructors_return_the_interned_node():
    assert Unary("gelu", X) is node("gelu", X)
    assert Var("x") is X
    assert isinstance(node("gelu", X), Unary)


def test_copy_and_deepcopy_keep_identity():
    e = parse(STANDARD_FFN)
    assert copy.copy(e) is e and copy.deepcopy(e) is e
    assert copy.deepcopy({"k": [e]})["k"][0] is e


def test_interning_table_drops_dead_nodes():
    gc.collect()
    n_before = len(expr_mod._TABLE)
    e = X
    for _ in range(50):
        e = node("sqrt_abs", node("neg", e))
    assert len(expr_mod._TABLE) >= n_before + 100
    ref = weakref.ref(e)
    del e
    gc.collect()
    assert ref() is None
    assert len(expr_mod._TABLE) <= n_before  # the whole dead chain left the table


SAMPLES = {
    Var: X,
    Slot: WB1,
    Unary: node("gelu", X),
    Binary: node("mul", X, node("tanh", X)),
    Linear: node("linear2_3", node("relu", X), WB2),
}


@pytest.mark.parametrize("cls", [Var, Slot, Unary, Binary, Linear], ids=lambda c: c.__name__)
def test_func_of_args_is_self(cls):
    e = SAMPLES[cls]
    assert type(e) is cls
    assert e.kind is e.op.kind
    assert e.func(*e.args) is e
    assert len(e.args) == e.op.arity
    assert str(e) == e.name if not e.args else str(e).startswith(e.name + "(")


@pytest.mark.parametrize("cls", [Var, Slot, Unary, Binary, Linear], ids=lambda c: c.__name__)
def test_str_is_dsl_that_parses_back_to_the_same_object(cls):
    e = SAMPLES[cls]
    assert parse_layers(str(e))[0] is e
    assert repr(e) == f"{cls.__name__}({str(e)!r})"


def test_nodes_are_immutable():
    e = node("gelu", X)
    with pytest.raises(AttributeError):
        e.foo = 1  # __slots__: no new attributes
    assert isinstance(e.args, tuple)


# -- property tests ----------------------------------------------------------------------------

@settings(max_examples=300)
@given(well_typed)
def test_random_asts_round_trip_and_pickle(e):
    text = str(e)
    assert " " not in text
    assert parse_layers(text)[0] is e
    assert pickle.loads(pickle.dumps(e)) is e
    assert pickle.loads(pickle.dumps(e, protocol=0)) is e
    assert e.func(*e.args) is e
    assert (e.size, e.depth) == _size_depth(e)
    # the walkers agree with each other and with the paths
    nodes = list(e.walk())
    pairs = list(e.walk_paths())
    assert [n for _, n in pairs] == nodes
    assert all(e.at(p) is n for p, n in pairs)
    assert all(e.replace_at(p, n) is e for p, n in pairs)
    assert sum(1 for n in nodes if n.kind is not Kind.SLOT) == e.size
    assert [str(n) for n in e.linears()] == [str(n) for n in nodes if n.kind is Kind.LINEAR]


@settings(max_examples=100)
@given(well_typed, well_typed)
def test_random_asts_in_a_model_spec_round_trip(a, b):
    spec = ModelSpec((a, b))
    assert parse_spec(str(spec), validate=False) == spec
    assert parse_spec(spec.to_lines(), validate=False) == spec


def test_top_level_slots_round_trip():
    assert parse_layers("wb1")[0] is WB1
    assert parse_layers("wb2")[0] is WB2
    assert parse_layers("wb3")[0] is WB3


# -- size / depth ------------------------------------------------------------------------------

def test_standard_ffn_size_and_depth():
    e = parse(STANDARD_FFN)
    assert (e.size, e.depth) == (4, 3)
    assert (X.size, X.depth) == (1, 0)
    assert (WB1.size, WB1.depth) == (0, 0)
    assert (node("linear1_1", X, WB1).size, node("linear1_1", X, WB1).depth) == (2, 1)


@pytest.mark.parametrize("text", efficientbert_layers())
def test_size_depth_of_published_layers(text):
    e = parse(text)
    assert (e.size, e.depth) == _size_depth(e)
    assert len(e.linears()) == 2


def test_replace_at_and_contains():
    e = parse("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)")
    path = next(p for p, n in e.walk_paths() if n.name == "relu")
    e2 = e.replace_at(path, node("gelu", e.at(path).args[0]))
    assert str(e2) == "linear1_2(gelu(mul(linear1_2(x,wb1),x)),wb2)"
    assert e2.contains(node("linear1_2", X, WB1)) and not e2.contains(node("relu", X))
    assert e.replace_at((), X) is X
    assert isinstance(e, Linear) and e.slot == "wb2" and e.input is e.args[0]


def test_order_key_sorts_by_size_then_text():
    items = [node("tanh", X), X, node("add", X, X), node("gelu", X)]
    assert [str(i) for i in sorted(items, key=order_key)] == ["x", "gelu(x)", "tanh(x)", "add(x,x)"]


# -- errors from node() ------------------------------------------------------------------------

@pytest.mark.parametrize("name, args, words", [
    ("gelu", (X, X), ["gelu", "1 argument", "got 2"]),
    ("gelu", (), ["gelu", "got 0"]),
    ("add", (X,), ["add", "2 arguments", "got 1"]),
    ("max", (X, X, X), ["max", "got 3"]),
    ("linear1_1", (X,), ["linear1_1", "got 1"]),
    ("x", (X,), ["x", "0 arguments", "got 1"]),
])
def test_arity_errors(name, args, words):
    with pytest.raises(ArityError) as info:
        node(name, *args)
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.parametrize("name, args, arg", [
    ("add", (X, WB1), 1),
    ("mul", (WB2, X), 0),
    ("gelu", (WB1,), 0),
    ("linear1_1", (X, X), 1),
    ("linear1_1", (WB1, WB1), 0),
    ("linear2_2", (X, node("gelu", X)), 1),
])
def test_slot_type_errors(name, args, arg):
    with pytest.raises(SlotTypeError) as info:
        node(name, *args)
    assert info.value.arg == arg
    assert name in str(info.value)


def test_non_expression_argument():
    with pytest.raises(DSLError, match="not an expression"):
        node("gelu", "x")


def test_unknown_operator():
    with pytest.raises(UnknownNameError):
        node("gleu", X)


def test_nesting_too_deep_is_refused_at_max_depth_plus_one():
    e = X
    for _ in range(MAX_DEPTH):
        e = node("neg", e)
    assert e.depth == MAX_DEPTH
    with pytest.raises(NestingTooDeepError, match=str(MAX_DEPTH)):
        node("neg", e)
    with pytest.raises(NestingTooDeepError):
        node("add", X, e)
    with pytest.raises(NestingTooDeepError):
        node("linear1_1", e, WB1)
    # a refused node is not interned: building it again fails again
    with pytest.raises(NestingTooDeepError):
        node("neg", e)
    assert ("neg", (e,)) not in expr_mod._TABLE


# -- model specs -------------------------------------------------------------------------------

def test_model_spec_str_and_parse_round_trip():
    layers = tuple(parse(t) for t in efficientbert_layers())
    spec = ModelSpec(layers)
    assert len(spec) == 6 and list(spec) == list(layers) and spec[3] is layers[3]
    assert str(spec) == "[" + "; ".join(efficientbert_layers()) + "]"
    assert parse_spec(str(spec)) == spec
    assert parse_spec(spec.to_lines()) == spec
    assert spec.to_lines().splitlines() == list(efficientbert_layers())


def test_model_spec_broadcast():
    one = ModelSpec((parse(STANDARD_FFN),))
    six = one.broadcast(6)
    assert len(six) == 6 and all(e is one[0] for e in six)
    spec = ModelSpec(tuple(parse(t) for t in efficientbert_layers()))
    assert spec.broadcast(6) is spec
    with pytest.raises(DSLError, match="6 layers but the model has 12"):
        spec.broadcast(12)


def test_empty_model_spec_is_refused():
    with pytest.raises(DSLError):
        ModelSpec(())
