"""The operator table: torch and sympy semantics agree, and the algebraic flags are true."""
from __future__ import annotations

import math

import pytest
import sympy
import torch

from exprsearch.errors import UnknownNameError
from exprsearch.lang.ops import (
    ALL_NAMES,
    BLOCK_CHOICES,
    OPS,
    RATIO_CHOICES,
    REFERENCE_BINARY,
    REFERENCE_UNARY,
    Kind,
    linear_op,
    op,
    ops_of,
)

UNARY = [o.name for o in OPS.values() if o.kind is Kind.UNARY]
BINARY = [o.name for o in OPS.values() if o.kind is Kind.BINARY]

POINTS = [-50.0, -10.0, -7.3, -3.0, -1.0, -0.5, -0.1, -1e-3, 0.0, 1e-3, 0.1, 0.5, 1.0, 2.0, 3.0,
          4.0, 7.5, 10.0, 20.0, 50.0]
PAIRS = [(a, b) for a, b in zip(POINTS, reversed(POINTS))] + [(0.3, 0.3), (-2.0, -2.0), (0.0, 0.0),
                                                            (1.5, -0.25), (-0.75, 6.0)]


def _sym_value(expr: sympy.Expr) -> float:
    return float(sympy.N(expr, 30))


def _close(got: float, want: float) -> bool:
    return abs(got - want) <= 1e-6 * max(1.0, abs(want))


@pytest.mark.parametrize("name", UNARY)
def test_unary_torch_matches_sympy(name):
    o = OPS[name]
    a = sympy.Symbol("a", real=True)
    sym = o.sympy_fn(a)
    got = o.torch_fn(torch.tensor(POINTS, dtype=torch.float64))
    bad = [(p, float(g), _sym_value(sym.subs(a, sympy.Float(p, 30))))
           for p, g in zip(POINTS, got.tolist())
           if not _close(float(g), _sym_value(sym.subs(a, sympy.Float(p, 30))))]
    assert not bad, f"{name}: (point, torch, sympy) disagree: {bad}"


@pytest.mark.parametrize("name", BINARY)
def test_binary_torch_matches_sympy(name):
    o = OPS[name]
    a, b = sympy.symbols("a b", real=True)
    sym = o.sympy_fn(a, b)
    xa = torch.tensor([p[0] for p in PAIRS], dtype=torch.float64)
    xb = torch.tensor([p[1] for p in PAIRS], dtype=torch.float64)
    got = o.torch_fn(xa, xb).tolist()
    for (pa, pb), g in zip(PAIRS, got):
        want = _sym_value(sym.subs({a: sympy.Float(pa, 30), b: sympy.Float(pb, 30)}))
        assert _close(g, want), (name, pa, pb, g, want)


@pytest.mark.parametrize("name", UNARY + BINARY)
def test_elementwise_rows_are_complete(name):
    o = OPS[name]
    assert o.torch_fn is not None and o.sympy_fn is not None
    assert o.elementwise and not o.is_linear and not o.is_leaf
    assert o.arity == (1 if o.kind is Kind.UNARY else 2)
    assert o.cost > 0


def test_linear_rows():
    lin = ops_of(Kind.LINEAR)
    assert len(lin) == 16
    assert sorted((o.blocks, o.ratio) for o in lin) == [(x, y) for x in range(1, 5) for y in range(1, 5)]
    for o in lin:
        assert o.name == f"linear{o.blocks}_{o.ratio}"
        assert o.blocks in (1, 2, 3, 4) and o.ratio in (1, 2, 3, 4)
        assert o.arity == 2 and o.is_linear and not o.elementwise and o.torch_fn is None
        assert linear_op(o.blocks, o.ratio) is o
    assert BLOCK_CHOICES == (1, 2, 3, 4) and RATIO_CHOICES == (1, 2, 3, 4)


def test_leaves():
    assert [o.name for o in ops_of(Kind.VAR)] == ["x"]
    assert [o.name for o in ops_of(Kind.SLOT)] == ["wb1", "wb2", "wb3"]
    for name in ("x", "wb1", "wb2", "wb3"):
        assert OPS[name].arity == 0 and OPS[name].is_leaf
    # the gate slot is an extension: the reference space has wb1 and wb2 only
    assert [o.name for o in ops_of(Kind.SLOT) if o.reference] == ["wb1", "wb2"]


def test_table_is_consistent():
    assert tuple(OPS) == ALL_NAMES
    assert all(k == v.name for k, v in OPS.items())
    # non-elementwise flags only make sense on the matching arity
    for o in OPS.values():
        if o.commutative or o.associative:
            assert o.kind is Kind.BINARY, o.name
        if o.blocks or o.ratio:
            assert o.kind is Kind.LINEAR, o.name


# -- flags are true -------------------------------------------------------------------------

def _random_inputs(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(400, generator=g, dtype=torch.float64)
    scales = torch.tensor([1e-3, 1.0, 10.0, 1e3, 1e5], dtype=torch.float64).repeat(80)
    special = torch.tensor([0.0, -0.0, 1e-300, -1e-300, 1e30, -1e30, 88.0, -88.0, 710.0, -710.0],
                           dtype=torch.float64)
    return torch.cat([base * scales, special])


X1 = _random_inputs(0)
X2 = _random_inputs(1)


@pytest.mark.parametrize("name", [n for n in BINARY if OPS[n].commutative])
def test_commutative_ops_commute(name):
    f = OPS[name].torch_fn
    assert torch.equal(f(X1, X2), f(X2, X1))


@pytest.mark.parametrize("name", [n for n in BINARY if not OPS[n].commutative])
def test_non_commutative_ops_do_not_commute(name):
    f = OPS[name].torch_fn
    assert not torch.equal(f(X1, X2), f(X2, X1))


@pytest.mark.parametrize("name", [n for n in BINARY if OPS[n].associative and n != "add"])
def test_associative_ops_are_exactly_associative(name):
    f = OPS[name].torch_fn
    x3 = _random_inputs(2)
    assert torch.equal(f(f(X1, X2), x3), f(X1, f(X2, x3)))


def test_add_is_associative_up_to_rounding_and_mul_is_not_flattened():
    # float addition is not exactly associative, yet add chains are flattened (issue 13: one
    # candidate whatever the association): re-associating a sum only moves its rounding
    x = torch.tensor([1e16], dtype=torch.float64)
    y = torch.tensor([-1e16], dtype=torch.float64)
    z = torch.tensor([1.0], dtype=torch.float64)
    assert not torch.equal((x + y) + z, x + (y + z))
    assert OPS["add"].associative
    a, b, c = (t.double() for t in (X1, X2, _random_inputs(2)))
    assert torch.allclose((a + b) + c, a + (b + c), rtol=1e-14, atol=1e-14)
    assert not OPS["mul"].associative  # with mul(a, a) -> square(a) flattening would not be confluent


@pytest.mark.parametrize("name", [n for n in UNARY + BINARY if OPS[n].idempotent])
def test_idempotent_ops_are_idempotent(name):
    o = OPS[name]
    f = o.torch_fn
    if o.kind is Kind.UNARY:
        assert torch.equal(f(f(X1)), f(X1))
    else:
        assert torch.equal(f(X1, X1), X1)


@pytest.mark.parametrize("name", [n for n in UNARY if not OPS[n].idempotent])
def test_non_idempotent_unary_ops_are_not(name):
    f = OPS[name].torch_fn
    assert not torch.equal(f(f(X1)), f(X1))


@pytest.mark.parametrize("name", [n for n in UNARY + BINARY if OPS[n].nonneg])
def test_nonneg_ops_are_nonnegative(name):
    o = OPS[name]
    out = o.torch_fn(X1) if o.kind is Kind.UNARY else o.torch_fn(X1, X2)
    assert not torch.isnan(out).any()
    assert (out >= 0).all(), X1[out < 0][:5]


@pytest.mark.parametrize("name", [n for n in UNARY + BINARY if not OPS[n].nonneg])
def test_ops_not_flagged_nonneg_do_go_negative(name):
    o = OPS[name]
    out = o.torch_fn(X1) if o.kind is Kind.UNARY else o.torch_fn(X1, X2)
    assert (out < 0).any()


def test_activation_flags():
    acts = {o.name for o in OPS.values() if o.is_activation}
    assert acts == {"gelu", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "swish", "sqrelu"}


def test_reference_space_matches_reference_notes():
    # docs/reference_notes.md section 2: arity 1 gelu sigmoid tanh relu leaky_relu elu swish;
    # arity 2 add mul max (plus the linears)
    assert REFERENCE_UNARY == ("gelu", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "swish")
    assert REFERENCE_BINARY == ("add", "mul", "max")
    assert [o.name for o in ops_of(Kind.BINARY)] == ["add", "mul", "max", "sub", "min"]


def test_documented_constants():
    t = torch.tensor([-2.0, 3.0], dtype=torch.float64)
    assert torch.allclose(OPS["leaky_relu"].torch_fn(t), torch.tensor([-0.02, 3.0], dtype=torch.float64))
    assert math.isclose(float(OPS["elu"].torch_fn(t)[0]), math.exp(-2.0) - 1.0, rel_tol=1e-12)
    assert math.isclose(float(OPS["sqrt_abs"].torch_fn(torch.zeros(1, dtype=torch.float64))), 1e-3,
                        rel_tol=1e-9)
    assert torch.allclose(OPS["swish"].torch_fn(t), t * torch.sigmoid(t))


def test_op_lookup_and_unknown_name():
    assert op("gelu") is OPS["gelu"]
    with pytest.raises(UnknownNameError) as info:
        op("gleu")
    assert "gelu" in (info.value.hint or "")
    with pytest.raises(UnknownNameError) as info:
        op("linear9_9")
    assert "X" in info.value.hint and "Y" in info.value.hint


@pytest.mark.parametrize("name", [o.name for o in OPS.values() if o.kind in (Kind.UNARY, Kind.BINARY)])
def test_each_operators_python_source_computes_its_torch_function(name, tmp_path):
    """The op table's ``py`` template (what a shipped model's generated code reads) equals ``torch_fn``
    bit for bit, for every elementwise operator."""
    import importlib.util

    import torch
    o = OPS[name]
    src = tmp_path / "gen.py"
    src.write_text("import torch\nimport torch.nn.functional as F\n\n\ndef f(a, b):\n    return "
                   + o.py.format("a", "b") + "\n")
    spec = importlib.util.spec_from_file_location("gen", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    a, b = torch.randn(4, 64), torch.randn(4, 64)
    want = o.torch_fn(a) if o.arity == 1 else o.torch_fn(a, b)
    assert torch.equal(mod.f(a, b), want)
