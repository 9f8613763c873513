"""compiler.supernet: weight-sharing views, inheritance by copy, and teacher FFN loading."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import transformers

import exprsearch as es
from exprsearch.compiler import (
    CompileError,
    FFNConfig,
    SuperFFN,
    graph_cost,
    inherit,
    load_teacher_ffn,
    lower,
    lower_shared,
)
from exprsearch.compiler.lower import block

H, D = 16, 32


def _super(max_blocks: int = 4, hidden: int = H, base_width: int | None = D) -> SuperFFN:
    torch.manual_seed(0)
    sup = SuperFFN(FFNConfig(hidden=hidden, base_width=base_width), max_blocks=max_blocks)
    with torch.no_grad():  # non-trivial LayerNorms, so copying them is checked too
        for b in sup.blocks:
            b.ln.weight.copy_(torch.rand(hidden) + 0.5)
            b.ln.bias.copy_(torch.randn(hidden) * 0.1)
    return sup


def test_shared_parameters_are_the_supernet_tensors():
    sup = _super()
    gm = lower_shared(es.parse("linear2_2(gelu(linear2_2(x,wb1)),wb2)"), sup)
    mine = dict(gm.named_parameters())
    assert mine["blocks.0.wb1.weight"] is sup.blocks[0].wb1.weight
    assert mine["blocks.1.wb2.bias"] is sup.blocks[1].wb2.bias
    assert mine["blocks.1.ln.weight"] is sup.blocks[1].ln.weight
    assert not any(k.startswith(("blocks.2.", "blocks.3.")) for k in mine)


def test_shared_gradients_land_only_in_the_used_slices():
    sup = _super()
    e = es.parse("linear2_2(gelu(linear2_2(x,wb1)),wb2)")  # X = 2, d = D / 2 = 16
    gm = lower_shared(e, sup).eval()
    torch.manual_seed(1)
    x = torch.randn(2, 5, H)
    (gm(x) * torch.randn(2, 5, H)).sum().backward()  # a random projection: sum(LN(.)) has ~0 grad
    d = 16
    for b in (0, 1):
        w1, b1 = sup.blocks[b].wb1.weight.grad, sup.blocks[b].wb1.bias.grad
        w2, b2 = sup.blocks[b].wb2.weight.grad, sup.blocks[b].wb2.bias.grad
        assert w1.shape == (D, H) and w2.shape == (H, D)
        assert w1[:d].abs().sum() > 0 and torch.count_nonzero(w1[d:]) == 0
        assert b1[:d].abs().sum() > 0 and torch.count_nonzero(b1[d:]) == 0
        assert w2[:, :d].abs().sum() > 0 and torch.count_nonzero(w2[:, d:]) == 0
        assert torch.count_nonzero(b2) > 0  # the full wb2 bias is used
        assert sup.blocks[b].ln.weight.grad is not None
    for b in (2, 3):
        for p in sup.blocks[b].parameters():
            assert p.grad is None or torch.count_nonzero(p.grad) == 0


def test_shared_view_follows_supernet_updates():
    sup = _super()
    e = es.parse("linear1_3(relu(linear1_3(x,wb1)),wb2)")
    gm = lower_shared(e, sup).eval()
    x = torch.randn(2, 3, H)
    with torch.no_grad():
        before = gm(x)
        sup.blocks[0].wb1.weight[:3].mul_(-2.0)
        after = gm(x)
        assert not torch.equal(before, after)
        assert torch.equal(after, inherit(sup, e).eval()(x))


def test_inherit_copies_the_slices():
    sup = _super()
    e = es.parse("linear3_2(gelu(linear3_2(max(x,tanh(x)),wb1)),wb2)")
    gm = inherit(sup, e)
    d = D // 2
    for b in range(3):
        src, dst = sup.blocks[b], block(gm, b)
        assert dst.wb1.weight.shape == (d, H) and dst.wb2.weight.shape == (H, d)
        assert torch.equal(dst.wb1.weight, src.wb1.weight[:d, :H])
        assert torch.equal(dst.wb1.bias, src.wb1.bias[:d])
        assert torch.equal(dst.wb2.weight, src.wb2.weight[:, :d])
        assert torch.equal(dst.wb2.bias, src.wb2.bias)
        assert torch.equal(dst.ln.weight, src.ln.weight) and torch.equal(dst.ln.bias, src.ln.bias)
        assert dst.wb1.weight.data_ptr() != src.wb1.weight.data_ptr()
    assert not hasattr(gm.blocks, "3")
    # modifying the copy leaves the supernet alone
    snapshot = {k: v.clone() for k, v in sup.state_dict().items()}
    with torch.no_grad():
        for p in gm.parameters():
            p.add_(1.0)
    assert all(torch.equal(v, snapshot[k]) for k, v in sup.state_dict().items())


@pytest.mark.parametrize("text", [
    "linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)",
    "tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))",
    "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)",
])
def test_lower_shared_and_inherit_compute_the_same_function(text):
    sup = _super()
    e = es.parse(text)
    x = torch.randn(3, 4, H)
    with torch.no_grad():
        a = lower_shared(e, sup).eval()(x)
        b = inherit(sup, e).eval()(x)
    assert torch.equal(a, b)


def test_mul_width_cut_shares_the_first_columns_of_wb2():
    """d = 2H > H: the mul cuts to H, so wb2 reads (and shares) only the first H input columns."""
    sup = _super(base_width=4 * H)
    e = es.parse("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)")
    gm = inherit(sup, e)
    assert block(gm, 0).wb1.weight.shape == (2 * H, H) and block(gm, 0).wb2.weight.shape == (H, H)
    assert torch.equal(block(gm, 0).wb2.weight, sup.blocks[0].wb2.weight[:, :H])
    x = torch.randn(2, 3, H)
    with torch.no_grad():
        assert torch.equal(lower_shared(e, sup).eval()(x), gm.eval()(x))


def test_shared_cost_counts_the_slices():
    sup = _super()
    e = es.parse("linear2_4(gelu(linear2_4(x,wb1)),wb2)")
    shared, own = lower_shared(e, sup), inherit(sup, e)
    n_own = sum(p.numel() for p in own.parameters())
    assert graph_cost(shared, H).params == graph_cost(own, H).params == n_own
    assert n_own < sum(p.numel() for b in list(sup.blocks)[:2] for p in b.parameters())


@pytest.mark.parametrize("x_blocks", [1, 2, 3, 4])
@pytest.mark.parametrize("y_ratio", [1, 2, 3, 4])
def test_inherit_shapes_for_every_linear_id(x_blocks, y_ratio):
    sup = _super()
    e = es.parse(f"linear{x_blocks}_{y_ratio}(gelu(linear{x_blocks}_{y_ratio}(x,wb1)),wb2)")
    gm = inherit(sup, e)
    d = D // y_ratio
    shapes = {k: tuple(v.shape) for k, v in gm.named_parameters()}
    want = {}
    for b in range(x_blocks):
        want.update({f"blocks.{b}.wb1.weight": (d, H), f"blocks.{b}.wb1.bias": (d,),
                     f"blocks.{b}.wb2.weight": (H, d), f"blocks.{b}.wb2.bias": (H,),
                     f"blocks.{b}.ln.weight": (H,), f"blocks.{b}.ln.bias": (H,)})
    assert shapes == want
    x = torch.randn(1, 2, H)
    with torch.no_grad():
        assert torch.equal(lower_shared(e, sup).eval()(x), gm.eval()(x))


def test_full_supernet_forward_is_the_standard_ffn_stack():
    sup = _super().eval()
    e = es.parse("linear4_1(gelu(linear4_1(x,wb1)),wb2)")  # all 4 blocks at full width
    x = torch.randn(2, 3, H)
    with torch.no_grad():
        torch.testing.assert_close(sup(x), inherit(sup, e).eval()(x), rtol=0, atol=1e-6)


def test_shareable_errors():
    sup = _super(max_blocks=2)
    two_wb1 = es.parse("linear1_1(add(linear1_1(x,wb1),linear1_1(tanh(x),wb1)),wb2)", strict=False)
    with pytest.raises(CompileError, match="one wb1, one wb2 and at most one wb3"):
        lower_shared(two_wb1, sup)
    with pytest.raises(CompileError, match="one wb1, one wb2"):
        inherit(sup, two_wb1)
    two_gates = es.parse("linear1_1(mul(mul(linear1_1(x,wb1),linear1_1(x,wb3)),linear1_1(tanh(x),wb3)),wb2)",
                         strict=False)
    with pytest.raises(CompileError, match=r"has \['wb1', 'wb2', 'wb3', 'wb3_2'\]"):
        lower_shared(two_gates, sup)
    deep = es.parse("linear3_1(gelu(linear3_1(x,wb1)),wb2)")
    with pytest.raises(CompileError, match="stacks 3 blocks; the supernet has 2"):
        lower_shared(deep, sup)
    with pytest.raises(CompileError, match="stacks 3 blocks"):
        inherit(sup, deep)
    # two blocks fit
    assert lower_shared(es.parse("linear2_1(gelu(linear2_1(x,wb1)),wb2)"), sup)(torch.randn(1, 1, H)).shape == (1, 1, H)


# ---------------------------------------------------------------------------------------------
# teacher FFN loading


@pytest.fixture(scope="module")
def tiny_bert():
    torch.manual_seed(2)
    cfg = transformers.BertConfig(hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=2, vocab_size=100)
    model = transformers.BertModel(cfg).eval()
    with torch.no_grad():
        for layer in model.encoder.layer:  # HF initialises LN to (1, 0) and biases to 0
            for p in (layer.intermediate.dense.bias, layer.output.dense.bias,
                      layer.output.LayerNorm.weight, layer.output.LayerNorm.bias):
                p.copy_(torch.randn_like(p))
    return model


def test_load_teacher_ffn_into_supernet(tiny_bert):
    layer = tiny_bert.encoder.layer[1]
    w1, b1 = layer.intermediate.dense.weight, layer.intermediate.dense.bias
    w2, b2 = layer.output.dense.weight, layer.output.dense.bias
    ln = layer.output.LayerNorm
    sup = SuperFFN(FFNConfig(hidden=32, base_width=64))
    n = load_teacher_ffn(sup, layer.intermediate, layer.output)
    assert n == 4 * 8  # 4 blocks x (wb1 w, b; wb2 w, b; the gate wb3 w, b; LN w, b)
    for b in sup.blocks:
        assert torch.equal(b.wb1.weight, w1[:64]) and torch.equal(b.wb1.bias, b1[:64])
        assert torch.equal(b.wb3.weight, w1[:64]) and torch.equal(b.wb3.bias, b1[:64])  # like wb1
        assert torch.equal(b.wb2.weight, w2[:, :64]) and torch.equal(b.wb2.bias, b2)
        assert torch.equal(b.ln.weight, ln.weight) and torch.equal(b.ln.bias, ln.bias)
    # copies, not aliases
    assert sup.blocks[0].wb1.weight.data_ptr() != w1.data_ptr()


def test_load_teacher_ffn_into_lowered_ffn_reproduces_the_teacher_ffn(tiny_bert):
    layer = tiny_bert.encoder.layer[0]
    gm = lower(es.parse("linear1_1(gelu(linear1_1(x,wb1)),wb2)"), FFNConfig(hidden=32, base_width=128)).eval()
    assert load_teacher_ffn(gm, layer.intermediate, layer.output) == 6
    x = torch.randn(2, 3, 32)
    with torch.no_grad():
        want = layer.output(layer.intermediate(x), x)  # BERT's own FFN
        torch.testing.assert_close(gm(x), want, rtol=0, atol=1e-6)


def test_load_teacher_ffn_into_narrow_stacked_ffn(tiny_bert):
    layer = tiny_bert.encoder.layer[0]
    gm = lower(es.parse("linear2_4(gelu(linear2_4(x,wb1)),wb2)"), FFNConfig(hidden=32, base_width=128))
    assert load_teacher_ffn(gm, layer.intermediate, layer.output) == 2 * 6
    for b in range(2):  # both blocks get the same warm start: the first d = 32 rows / columns
        blk = block(gm, b)
        assert torch.equal(blk.wb1.weight, layer.intermediate.dense.weight[:32])
        assert torch.equal(blk.wb2.weight, layer.output.dense.weight[:, :32])


def test_load_teacher_ffn_skips_what_does_not_fit(tiny_bert):
    layer = tiny_bert.encoder.layer[0]
    sup = SuperFFN(FFNConfig(hidden=32, base_width=256), max_blocks=1)  # wider than the teacher's 128
    before = sup.blocks[0].wb1.weight.clone()
    assert load_teacher_ffn(sup, layer.intermediate, layer.output) == 2  # only the LayerNorm
    assert torch.equal(sup.blocks[0].wb1.weight, before)
    assert torch.equal(sup.blocks[0].ln.weight, layer.output.LayerNorm.weight)
