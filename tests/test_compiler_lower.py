"""compiler.lower: expression -> torch.fx FFN module.

Semantics checked against hand-written computations (the reference's post-LN residual blocks,
the width rule, X stacking, the DAG), the sympy form, fixed code snapshots, the verifier, and
the per-process module cache (compiler.execute).
"""
from __future__ import annotations

import math
import operator
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import fx, nn

import exprsearch.compiler.execute as execute_mod
import exprsearch as es
from exprsearch.compiler import CompileError, FFNConfig, ModuleCache, lower
from exprsearch.compiler.lower import blocks_of, slot_instances, verify_graph
from exprsearch.lang.ops import OPS, Kind
from exprsearch.lang.symbolic import X_SYMBOL, to_sympy

STANDARD = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
UNARY = [o.name for o in OPS.values() if o.kind is Kind.UNARY]
BINARY = [o.name for o in OPS.values() if o.kind is Kind.BINARY]
ELEMENTWISE = [o.name for o in OPS.values() if o.torch_fn is not None]


def params(gm: nn.Module) -> dict[str, torch.Tensor]:
    return dict(gm.named_parameters())


def ln(h: torch.Tensor, p: dict[str, torch.Tensor], b: int, eps: float = 1e-12) -> torch.Tensor:
    return F.layer_norm(h, (h.shape[-1],), p[f"blocks.{b}.ln.weight"], p[f"blocks.{b}.ln.bias"], eps)


def lin(v: torch.Tensor, p: dict[str, torch.Tensor], b: int, name: str) -> torch.Tensor:
    return F.linear(v, p[f"blocks.{b}.{name}.weight"], p[f"blocks.{b}.{name}.bias"])


def randomize_ln(gm: nn.Module) -> None:
    """LayerNorms start at (1, 0); give them random affine parameters so they are tested too."""
    with torch.no_grad():
        for name, p in gm.named_parameters():
            if ".ln." in name:
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("weight") else 0.0))


# ---------------------------------------------------------------------------------------------
# the standard FFN is BERT's FFN


class HandFFN(nn.Module):
    """BERT's FFN written by hand: LayerNorm(x + Dropout(Linear2(GELU(Linear1(x)))))."""

    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(hidden, inner)
        self.linear2 = nn.Linear(inner, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.drop(self.linear2(F.gelu(self.linear1(x)))))


def _standard_pair(hidden: int = 32):
    torch.manual_seed(0)
    gm = lower(es.parse(STANDARD), FFNConfig(hidden=hidden, base_width=4 * hidden))
    randomize_ln(gm)
    ref = HandFFN(hidden, 4 * hidden)
    p = params(gm)
    with torch.no_grad():
        ref.linear1.weight.copy_(p["blocks.0.wb1.weight"])
        ref.linear1.bias.copy_(p["blocks.0.wb1.bias"])
        ref.linear2.weight.copy_(p["blocks.0.wb2.weight"])
        ref.linear2.bias.copy_(p["blocks.0.wb2.bias"])
        ref.norm.weight.copy_(p["blocks.0.ln.weight"])
        ref.norm.bias.copy_(p["blocks.0.ln.bias"])
    return gm.eval(), ref.eval()


def test_standard_ffn_parameter_shapes():
    gm = lower(es.parse(STANDARD), FFNConfig(hidden=32, base_width=128))
    shapes = {k: tuple(v.shape) for k, v in params(gm).items()}
    assert shapes == {"blocks.0.wb1.weight": (128, 32), "blocks.0.wb1.bias": (128,),
                      "blocks.0.wb2.weight": (32, 128), "blocks.0.wb2.bias": (32,),
                      "blocks.0.ln.weight": (32,), "blocks.0.ln.bias": (32,)}
    assert gm.meta["expr"] == STANDARD
    assert gm.meta["config"] == FFNConfig(hidden=32, base_width=128)


def test_standard_ffn_equals_hand_written_fp32_bit_for_bit():
    gm, ref = _standard_pair()
    x = torch.randn(3, 7, 32)
    with torch.no_grad():
        out, want = gm(x), ref(x)
    assert out.shape == (3, 7, 32) and out.dtype == torch.float32
    assert torch.equal(out, want)


def test_standard_ffn_under_bf16_autocast():
    gm, ref = _standard_pair()
    x = torch.randn(3, 7, 32)
    with torch.no_grad():
        want32 = ref(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = gm(x)
            want16 = ref(x)
        cap = _Capture(gm)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cap.run(x)
    assert [t.dtype for t in cap.linear_inputs] == [torch.float32, torch.bfloat16]  # wb2 reads bf16
    # the same computation as the hand-written module under autocast ...
    assert torch.equal(out, want16)
    # ... and within bf16 accuracy of the fp32 reference (but not bit-identical: bf16 was used)
    torch.testing.assert_close(out.float(), want32, rtol=2e-2, atol=2e-2)
    assert not torch.equal(out.float(), want32)


def test_dropout_once_per_block_on_expression_output():
    """Training mode: LN(h + Dropout(expr(h))) per block, one dropout call per block, same RNG stream."""
    torch.manual_seed(0)
    gm = lower(es.parse("linear2_1(gelu(linear2_1(x,wb1)),wb2)"), FFNConfig(hidden=16, dropout=0.5)).train()
    p = params(gm)
    x = torch.randn(2, 5, 16)
    torch.manual_seed(123)
    out = gm(x)
    torch.manual_seed(123)
    h = x
    for b in range(2):
        y = lin(F.gelu(lin(h, p, b, "wb1")), p, b, "wb2")
        h = ln(h + F.dropout(y, 0.5, training=True), p, b)
    assert torch.equal(out, h)
    gm.eval()
    assert not torch.equal(gm(x), out)  # eval mode switches dropout off


# ---------------------------------------------------------------------------------------------
# every elementwise op of the table, lowered with its torch_fn


@pytest.mark.parametrize("name", UNARY)
def test_unary_op_inside_wb1_input(name):
    torch.manual_seed(1)
    op = OPS[name]
    e = es.parse(f"linear1_1(linear1_1({name}(x),wb1),wb2)")
    gm = lower(e, FFNConfig(hidden=16, base_width=64)).eval()
    randomize_ln(gm)
    p = params(gm)
    assert tuple(p["blocks.0.wb1.weight"].shape) == (64, 16)
    x = torch.randn(2, 5, 16) * 2
    with torch.no_grad():
        want = ln(x + lin(lin(op.torch_fn(x), p, 0, "wb1"), p, 0, "wb2"), p, 0)
        out = gm(x)
    assert torch.equal(out, want)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert targets.count(op.torch_fn) == 1


@pytest.mark.parametrize("name", BINARY)
def test_binary_op_inside_wb1_input(name):
    torch.manual_seed(2)
    op = OPS[name]
    e = es.parse(f"linear1_1(linear1_1({name}(x,tanh(x)),wb1),wb2)")
    gm = lower(e, FFNConfig(hidden=16, base_width=64)).eval()
    randomize_ln(gm)
    p = params(gm)
    x = torch.randn(2, 5, 16) * 2
    with torch.no_grad():
        f = op.torch_fn(x, torch.tanh(x))
        want = ln(x + lin(lin(f, p, 0, "wb1"), p, 0, "wb2"), p, 0)
        out = gm(x)
    assert torch.equal(out, want)


@pytest.mark.parametrize("name", BINARY)
def test_binary_op_width_rule(name):
    """OP(linear1_2(x,wb1), x) with d = H/2: x is cut to its first d channels, for every binary op."""
    torch.manual_seed(3)
    op = OPS[name]
    e = es.parse(f"linear1_2({name}(linear1_2(x,wb1),x),wb2)", strict=False)
    gm = lower(e, FFNConfig(hidden=16)).eval()
    randomize_ln(gm)
    p = params(gm)
    assert tuple(p["blocks.0.wb2.weight"].shape) == (16, 8)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        want = ln(x + lin(op.torch_fn(lin(x, p, 0, "wb1"), x[..., :8]), p, 0, "wb2"), p, 0)
        out = gm(x)
    assert torch.equal(out, want)


# ---------------------------------------------------------------------------------------------
# sympy and torch agree


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_op_row_torch_fn_matches_sympy_fn(name):
    op = OPS[name]
    syms = sympy.symbols("a b", real=True)[: op.arity]
    f = sympy.lambdify(syms, op.sympy_fn(*syms), modules=["math", "mpmath"])
    g = torch.Generator().manual_seed(7)
    pts = torch.randn(40, op.arity, generator=g, dtype=torch.float64) * 3
    pts = torch.cat([pts, torch.zeros(1, op.arity, dtype=torch.float64),
                     torch.tensor([[-0.5] * op.arity, [1.5] * op.arity], dtype=torch.float64)])
    if op.arity == 2:
        pts = torch.cat([pts, pts[:5, :1].repeat(1, 2)])  # equal operands (max/min ties)
    got = op.torch_fn(*pts.unbind(1))
    for row, t in zip(pts.tolist(), got.tolist()):
        s = float(f(*row))
        assert s == pytest.approx(t, rel=1e-9, abs=1e-12), (name, row, s, t)


SYMPY_CASES = [
    "linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)",
    "linear1_1(gelu(linear1_1(add(tanh(x),mul(x,tanh(x))),wb1)),wb2)",
    "sigmoid(linear1_2(relu(linear1_2(mul(swish(x),sigmoid(x)),wb1)),wb2))",
    "linear1_1(relu(linear1_1(add(mul(sigmoid(x),swish(x)),max(leaky_relu(x),min(elu(x),"
    "sub(sqrt_abs(x),neg(square(x)))))),wb1)),wb2)",
    "elu(linear2_1(sqrelu(linear2_1(sub(gelu(x),min(x,relu(x))),wb1)),wb2))",
]


NUMPY_ERF = {"erf": np.vectorize(math.erf)}  # numpy has no erf; keep scipy optional


class _Capture(fx.Interpreter):
    """Records the inputs of every F.linear node (in graph order)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.linear_inputs: list[torch.Tensor] = []

    def call_function(self, target, args, kwargs):
        if target is F.linear:
            self.linear_inputs.append(args[0])
        return super().call_function(target, args, kwargs)


@pytest.mark.parametrize("text", SYMPY_CASES)
def test_sympy_form_agrees_with_module(text):
    torch.manual_seed(4)
    e = es.parse(text)
    (w1,) = [n for n in e.linears() if n.slot == "wb1"]
    assert not w1.input.linears()
    y = w1.op.ratio
    hidden = 12
    # D = H * Y makes d = H, so the whole expression is width-consistent and sympy (elementwise)
    # describes all of it
    cfg = FFNConfig(hidden=hidden, base_width=hidden * y)
    gm = lower(e, cfg).eval()
    randomize_ln(gm)
    p = {k: v.detach().double().numpy() for k, v in params(gm).items()}
    x = torch.randn(3, 4, hidden) * 2

    # 1. the wb1-input subexpression: sympy (lambdified, float64) vs the graph's value
    inner = sympy.lambdify(X_SYMBOL, to_sympy(w1.input), modules=[NUMPY_ERF, "numpy"])
    cap = _Capture(gm)
    with torch.no_grad():
        out = cap.run(x)
    first_block_wb1_input = cap.linear_inputs[0]
    np.testing.assert_allclose(first_block_wb1_input.numpy(), inner(x.double().numpy()), rtol=1e-5, atol=1e-5)

    # 2. the whole expression: sympy with the linears bound to the module's weights, per block
    full = to_sympy(e)
    h = x.double().numpy()
    for b in range(blocks_of(e)):
        names = {f"lin{w1.op.blocks}_{y}_{slot}":
                 (lambda v, s=slot: v @ p[f"blocks.{b}.{s}.weight"].T + p[f"blocks.{b}.{s}.bias"])
                 for slot in ("wb1", "wb2")}
        f = sympy.lambdify(X_SYMBOL, full, modules=[names, NUMPY_ERF, "numpy"])
        z = h + f(h)
        mu, var = z.mean(-1, keepdims=True), z.var(-1, keepdims=True)
        h = (z - mu) / np.sqrt(var + 1e-12) * p[f"blocks.{b}.ln.weight"] + p[f"blocks.{b}.ln.bias"]
    np.testing.assert_allclose(out.numpy(), h, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# width rule, stacking, DAG, relaxed expressions


def test_width_rule_mul_cuts_x_to_d():
    torch.manual_seed(5)
    e = es.parse("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)")
    gm = lower(e, FFNConfig(hidden=16)).eval()
    randomize_ln(gm)
    p = params(gm)
    assert tuple(p["blocks.0.wb1.weight"].shape) == (8, 16)
    assert tuple(p["blocks.0.wb2.weight"].shape) == (16, 8)
    x = torch.randn(2, 3, 16)
    with torch.no_grad():
        want = ln(x + lin(torch.relu(lin(x, p, 0, "wb1") * x[..., :8]), p, 0, "wb2"), p, 0)
        assert torch.equal(gm(x), want)
    cuts = [n for n in gm.graph.nodes if n.target is operator.getitem]
    assert len(cuts) == 1 and cuts[0].args[0].name == "x"


def test_width_rule_d_wider_than_h_cuts_the_linear_output():
    torch.manual_seed(6)
    e = es.parse("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)")
    gm = lower(e, FFNConfig(hidden=16, base_width=64)).eval()  # d = 32 > H = 16
    randomize_ln(gm)
    p = params(gm)
    assert tuple(p["blocks.0.wb1.weight"].shape) == (32, 16)
    assert tuple(p["blocks.0.wb2.weight"].shape) == (16, 16)  # wb2 reads the cut (H-wide) product
    assert tuple(p["blocks.0.wb2.bias"].shape) == (16,)
    x = torch.randn(2, 3, 16)
    with torch.no_grad():
        want = ln(x + lin(torch.relu(lin(x, p, 0, "wb1")[..., :16] * x), p, 0, "wb2"), p, 0)
        assert torch.equal(gm(x), want)
    cuts = [n for n in gm.graph.nodes if n.target is operator.getitem]
    assert len(cuts) == 1 and cuts[0].args[0].target is F.linear
    assert list(slot_instances(e, FFNConfig(hidden=16, base_width=64)).values()) == [
        ("wb1", 32, 16), ("wb2", 16, 16)]


def test_stacked_blocks_have_distinct_parameters_and_run_in_sequence():
    torch.manual_seed(7)
    e = es.parse("linear3_2(gelu(linear3_2(max(x,tanh(x)),wb1)),wb2)")
    gm = lower(e, FFNConfig(hidden=16)).eval()
    randomize_ln(gm)
    p = params(gm)
    assert len(p) == 3 * 6
    assert {k.split(".")[1] for k in p} == {"0", "1", "2"}
    for name in ("wb1.weight", "wb2.weight", "ln.weight"):
        ts = [p[f"blocks.{b}.{name}"] for b in range(3)]
        assert len({t.data_ptr() for t in ts}) == 3
        assert not torch.equal(ts[0], ts[1]) and not torch.equal(ts[1], ts[2])
    x = torch.randn(2, 4, 16)
    h = x
    with torch.no_grad():
        for b in range(3):
            f = lin(F.gelu(lin(torch.maximum(h, torch.tanh(h)), p, b, "wb1")), p, b, "wb2")
            h = ln(h + f, p, b)
        assert torch.equal(gm(x), h)
    lns = [n.target for n in gm.graph.nodes if n.op == "call_module" and n.target.endswith(".ln")]
    assert lns == ["blocks.0.ln", "blocks.1.ln", "blocks.2.ln"]


def test_outer_activation_applies_inside_each_block():
    torch.manual_seed(8)
    e = es.parse("tanh(linear2_2(gelu(linear2_2(x,wb1)),wb2))")
    gm = lower(e, FFNConfig(hidden=16)).eval()
    randomize_ln(gm)
    p = params(gm)
    x = torch.randn(2, 4, 16)
    h = x
    with torch.no_grad():
        for b in range(2):
            h = ln(h + torch.tanh(lin(F.gelu(lin(h, p, b, "wb1")), p, b, "wb2")), p, b)
        assert torch.equal(gm(x), h)


def test_shared_subexpression_computed_once_per_block():
    e = es.parse("linear2_1(gelu(linear2_1(add(tanh(x),mul(x,tanh(x))),wb1)),wb2)")
    gm = lower(e, FFNConfig(hidden=16))
    calls = [n for n in gm.graph.nodes if n.op == "call_function"]
    assert sum(n.target is torch.tanh for n in calls) == 2  # one per block, 2 blocks
    # per block: tanh, mul, add, linear, gelu, linear, residual add
    assert len(calls) == 2 * 7
    # the single tanh of block 0 feeds both of its users
    tanh0 = next(n for n in calls if n.target is torch.tanh)
    assert {u.target for u in tanh0.users} == {torch.add, torch.mul}
    torch.manual_seed(9)
    randomize_ln(gm)
    p = params(gm)
    x = torch.randn(2, 3, 16)
    h = x
    with torch.no_grad():
        for b in range(2):
            t = torch.tanh(h)
            h = ln(h + lin(F.gelu(lin(torch.add(t, torch.mul(h, t)), p, b, "wb1")), p, b, "wb2"), p, b)
        assert torch.equal(gm.eval()(x), h)


def test_relaxed_two_wb1_linears_get_two_weight_sets():
    text = "linear1_1(add(linear1_1(x,wb1),linear1_1(tanh(x),wb1)),wb2)"
    with pytest.raises(es.ValidityError):
        es.parse(text)
    e = es.parse(text, strict=False)
    torch.manual_seed(10)
    gm = lower(e, FFNConfig(hidden=16, base_width=32)).eval()
    randomize_ln(gm)
    p = params(gm)
    assert sorted(k for k in p if "wb" in k) == ["blocks.0.wb1.bias", "blocks.0.wb1.weight",
                                                 "blocks.0.wb1_2.bias", "blocks.0.wb1_2.weight",
                                                 "blocks.0.wb2.bias", "blocks.0.wb2.weight"]
    assert p["blocks.0.wb1.weight"].shape == p["blocks.0.wb1_2.weight"].shape == (32, 16)
    assert not torch.equal(p["blocks.0.wb1.weight"], p["blocks.0.wb1_2.weight"])
    x = torch.randn(2, 3, 16)
    with torch.no_grad():
        want = ln(x + lin(lin(x, p, 0, "wb1") + lin(torch.tanh(x), p, 0, "wb1_2"), p, 0, "wb2"), p, 0)
        assert torch.equal(gm(x), want)


def test_relaxed_identical_linears_share_one_weight_set():
    """Structurally identical linears are one DAG node: one weight set, computed once."""
    e = es.parse("linear1_1(add(linear1_1(x,wb1),tanh(linear1_1(x,wb1))),wb2)", strict=False)
    gm = lower(e, FFNConfig(hidden=16))
    assert sorted({k.rsplit(".", 1)[0] for k in params(gm)}) == ["blocks.0.ln", "blocks.0.wb1", "blocks.0.wb2"]
    assert sum(n.target is F.linear for n in gm.graph.nodes) == 2


# ---------------------------------------------------------------------------------------------
# code snapshots


def _norm(code: str) -> str:
    return "\n".join(line.rstrip() for line in code.splitlines()).strip("\n") + "\n"


SNAPSHOT_CASES = {
    "standard_ffn": STANDARD,
    "efficientbert_layer4": "linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)",
    "efficientbert_layer5": "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)",
}


@pytest.mark.parametrize("name", sorted(SNAPSHOT_CASES))
def test_generated_code_snapshot(name):
    code = _norm(lower(es.parse(SNAPSHOT_CASES[name]), FFNConfig(hidden=16)).code)
    path = SNAPSHOTS / f"{name}.py.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code, encoding="utf-8")
        pytest.fail(f"snapshot {path} was missing and has been written: review it and re-run")
    assert code == _norm(path.read_text(encoding="utf-8")), f"generated code differs from {path}"


# ---------------------------------------------------------------------------------------------
# verifier and errors


def _graph_module(build) -> fx.GraphModule:
    g = fx.Graph()
    x = g.placeholder("x")
    g.output(build(g, x))
    return fx.GraphModule(nn.Module(), g)


def test_verify_graph_accepts_op_table_targets():
    gm = _graph_module(lambda g, x: g.call_function(torch.tanh, (x,)))
    verify_graph(gm, FFNConfig(hidden=8))  # no error
    assert "tensor_meta" in next(n for n in gm.graph.nodes if n.op == "call_function").meta


def test_verify_graph_rejects_target_outside_op_table():
    gm = _graph_module(lambda g, x: g.call_function(torch.sin, (x,)))
    with pytest.raises(CompileError, match="not in the op table"):
        verify_graph(gm, FFNConfig(hidden=8))


def test_verify_graph_rejects_call_method():
    gm = _graph_module(lambda g, x: g.call_method("tanh", (x,)))
    with pytest.raises(CompileError, match="opcode"):
        verify_graph(gm, FFNConfig(hidden=8))


def test_verify_graph_rejects_wrong_output_width():
    gm = _graph_module(lambda g, x: g.call_function(operator.getitem, (x, (Ellipsis, slice(None, 4)))))
    with pytest.raises(CompileError, match="output width 4"):
        verify_graph(gm, FFNConfig(hidden=8))


def test_verify_graph_rejects_op_inserted_into_lowered_graph():
    gm = lower(es.parse(STANDARD), FFNConfig(hidden=8))
    gelu = next(n for n in gm.graph.nodes if n.target is F.gelu)
    with gm.graph.inserting_after(gelu):
        bad = gm.graph.call_function(torch.exp, (gelu,))
    gelu.replace_all_uses_with(bad, delete_user_cb=lambda u: u is not bad)
    gm.recompile()
    with pytest.raises(CompileError, match="exp"):
        verify_graph(gm, FFNConfig(hidden=8))


def test_lowering_output_not_h_wide_is_a_compile_error():
    e = es.parse("linear1_2(x,wb1)", validate=False)
    with pytest.raises(CompileError, match="not H = 16"):
        lower(e, FFNConfig(hidden=16))
    # with D = 2H the same expression happens to be H wide, and lowers
    assert lower(e, FFNConfig(hidden=16, base_width=32))(torch.randn(1, 2, 16)).shape == (1, 2, 16)


# ---------------------------------------------------------------------------------------------
# module cache (compiler.execute)


def test_module_cache_lowers_each_canonical_key_once(monkeypatch):
    calls = []
    real = execute_mod.lower

    def counting(e, cfg, **kw):
        calls.append(str(e))
        return real(e, cfg, **kw)

    monkeypatch.setattr(execute_mod, "lower", counting)
    cache = ModuleCache()
    cfg = FFNConfig(hidden=16)
    a = cache.get(es.parse("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"), cfg)
    b = cache.get(es.parse("linear1_2(relu(mul(x,linear1_2(x,wb1))),wb2)"), cfg)  # same canonical form
    c = cache.get(es.parse("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"), cfg)
    assert (cache.misses, cache.hits) == (1, 2)
    assert calls == ["linear1_2(relu(mul(x,linear1_2(x,wb1))),wb2)"]
    assert a.code == b.code == c.code
    d = cache.get(es.parse("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"), FFNConfig(hidden=32))
    assert (cache.misses, cache.hits) == (2, 2) and len(calls) == 2
    assert d(torch.randn(1, 2, 32)).shape == (1, 2, 32)


def test_module_cache_gives_fresh_parameters_each_time():
    torch.manual_seed(11)
    cache = ModuleCache()
    e = es.parse("linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)")
    a, b = cache.get(e, FFNConfig(hidden=16)), cache.get(e, FFNConfig(hidden=16))
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys() and len(pa) == 12
    for k in pa:
        assert pa[k] is not pb[k] and pa[k].data_ptr() != pb[k].data_ptr()
        assert pa[k].shape == pb[k].shape
        if ".wb" in k:
            assert not torch.equal(pa[k], pb[k]), k  # re-initialised, not copied
    # each module computes the expression with its own weights
    x = torch.randn(2, 3, 16)
    with torch.no_grad():
        for gm in (a, b):
            gm.eval()
            p = params(gm)
            h = x
            for blk in range(2):
                h = ln(h + lin(F.gelu(lin(torch.maximum(h, torch.tanh(h)), p, blk, "wb1")), p, blk, "wb2"), p, blk)
            assert torch.equal(gm(x), h)
        before = b(x)
        pa["blocks.0.wb1.weight"].add_(1.0)  # changing a does not change b
        assert torch.equal(b(x), before)


def test_maybe_compile_disabled_and_cpu_autocast_are_no_ops():
    gm = lower(es.parse(STANDARD), FFNConfig(hidden=8))
    from exprsearch.compiler import autocast, maybe_compile
    assert maybe_compile(gm, False) is gm
    with autocast("cpu"):
        assert F.linear(torch.randn(2, 8), torch.randn(4, 8)).dtype == torch.float32


@pytest.mark.parametrize("module", ["exprsearch.compiler.lower", "exprsearch.compiler.supernet",
                                    "exprsearch.compiler.execute", "exprsearch.compiler.student"])
def test_module_doctests(module):
    """The examples in the compiler's docstrings run (compiler.cost's: see test_compiler_cost.py)."""
    import doctest
    import importlib
    res = doctest.testmod(importlib.import_module(module),
                          optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0


@pytest.mark.parametrize("text", [
    "linear1_1(gelu(linear1_1(x,wb1)),wb2)", "linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)",
    "tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))", "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)",
    "linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)", "linear3_4(add(sqrelu(linear3_4(x,wb1)),x),wb2)"])
def test_the_readable_block_source_computes_what_lower_compiles(text, tmp_path):
    """compiler/pysource.py writes one block as plain Python; run block by block over the lowered
    FFN's own modules, it gives the lowered graph's output bit for bit."""
    import importlib.util

    import exprsearch as es
    from exprsearch.compiler.lower import FFNConfig, lower
    from exprsearch.compiler.pysource import block_source
    cfg = FFNConfig(hidden=8, base_width=32, dropout=0.0)
    e = es.parse(text)
    gm = lower(e, cfg).eval()
    path = tmp_path / "ffn.py"
    path.write_text("import torch\nimport torch.nn.functional as F\n\n\n" + block_source(e, cfg) + "\n")
    spec = importlib.util.spec_from_file_location("ffn", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from exprsearch.compiler.lower import Block, slot_instances
    linears = {name: [i, o] for name, o, i in slot_instances(e, cfg).values()}
    blocks = torch.nn.ModuleList(Block(linears, cfg.hidden, cfg.ln_eps) for _ in gm.blocks.children())
    blocks.load_state_dict(gm.blocks.state_dict())  # the same tensors, in real nn.Linear modules
    x = torch.randn(2, 5, 8)
    h = x
    with torch.no_grad():
        for b in blocks:
            h = b.ln(h + mod.block(None, b, h))
        assert torch.equal(h, gm(x))
