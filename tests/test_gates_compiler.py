"""Gated FFNs, the wb3 extension (issue 24), in the compiler: one nn.Linear per linear (the gate is
H -> d), the cost model counted by hand, a hand-written GEGLU, supernet slices (a third matrix per
block, loaded from the teacher like wb1) and the supernet student."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import transformers
from torch import nn

import exprsearch as es
from exprsearch.compiler import FFNConfig, StudentConfig, SuperFFN, build_student, graph_cost, inherit, load_teacher_ffn
from exprsearch.compiler import lower, lower_shared
from exprsearch.compiler.cost import ffn_cost, linear_cost, spec_params
from exprsearch.compiler.lower import block
from exprsearch.kd.distill import SupernetStudent
from exprsearch.lang.parsing import parse_spec

GEGLU = "linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)"
SWIGLU = "linear1_3(mul(swish(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)"
GATED = [GEGLU, SWIGLU, "tanh(linear2_2(mul(linear2_2(x,wb1),linear2_2(tanh(x),wb3)),wb2))",
         "linear4_1(max(linear4_1(x,wb1),sigmoid(linear4_1(x,wb3))),wb2)"]


def test_geglu_parameters_by_hand():
    """H = D = 384, Y = 3: d = 384 // 3 = 128."""
    h, d = 384, 128
    wb1 = h * d + d    # 384 * 128 + 128 = 49,280: x -> value path
    wb3 = h * d + d    # 384 * 128 + 128 = 49,280: x -> gate, the same shape as wb1
    wb2 = d * h + h    # 128 * 384 + 384 = 49,536: gated value -> H
    ln = 2 * h         # LayerNorm weight and bias: 768
    want = wb1 + wb3 + wb2 + ln
    assert want == 148_864
    e, cfg = es.parse(GEGLU), FFNConfig(hidden=384)
    gm = lower(e, cfg)
    shapes = {k: tuple(v.shape) for k, v in gm.named_parameters()}
    assert shapes == {"blocks.0.wb1.weight": (d, h), "blocks.0.wb1.bias": (d,),
                      "blocks.0.wb3.weight": (d, h), "blocks.0.wb3.bias": (d,),
                      "blocks.0.wb2.weight": (h, d), "blocks.0.wb2.bias": (h,),
                      "blocks.0.ln.weight": (h,), "blocks.0.ln.bias": (h,)}
    assert sum(p.numel() for p in gm.parameters()) == want
    assert ffn_cost(e, cfg).params == linear_cost(e, cfg)[0] == want
    # matrix FLOPs: 2 per multiply-accumulate, three h x d matrices per token
    assert ffn_cost(e, cfg).mm_flops_per_token == linear_cost(e, cfg)[1] == 2.0 * 3 * h * d


@pytest.mark.parametrize("text", GATED)
@pytest.mark.parametrize("hidden, base", [(16, None), (16, 64), (32, 8)])
def test_compiled_parameters_equal_the_cost_model(text, hidden, base):
    e, cfg = es.parse(text), FFNConfig(hidden=hidden, base_width=base)
    gm = lower(e, cfg)
    n = sum(p.numel() for p in gm.parameters())
    assert graph_cost(gm, hidden).params == ffn_cost(e, cfg).params == linear_cost(e, cfg)[0] == n
    assert ffn_cost(e, cfg).mm_flops_per_token == linear_cost(e, cfg)[1]
    blocks = e.linears()[0].op.blocks
    assert all(block(gm, b).wb3.weight.shape == block(gm, b).wb1.weight.shape for b in range(blocks))


def test_spec_params_prices_a_gated_student_without_building_it():
    spec = parse_spec(f"[{GEGLU}; linear1_1(gelu(linear1_1(x,wb1)),wb2)]")
    cfg = StudentConfig(layers=2, hidden=32, heads=4, vocab_size=100, max_position=64, dropout=0.0)
    model = build_student(spec, cfg)
    want = spec_params(list(spec.layers), FFNConfig(hidden=32), vocab=100, max_position=64, type_vocab=2,
                       num_labels=2, heads=4)
    assert want == sum(p.numel() for p in model.parameters())


class HandGEGLU(nn.Module):
    """GEGLU written by hand: LayerNorm(x + Dropout(W2(GELU(W1 x) * W3 x)))."""

    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.value, self.gate = nn.Linear(hidden, inner), nn.Linear(hidden, inner)
        self.out = nn.Linear(inner, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.drop(self.out(F.gelu(self.value(x)) * self.gate(x))))


def test_compiled_geglu_equals_hand_written_bit_for_bit():
    torch.manual_seed(0)
    gm = lower(es.parse(GEGLU), FFNConfig(hidden=24)).eval()
    ref = HandGEGLU(24, 8).eval()
    with torch.no_grad():
        for mine, theirs in (("wb1", ref.value), ("wb3", ref.gate), ("wb2", ref.out), ("ln", ref.norm)):
            src = getattr(block(gm, 0), mine)
            theirs.weight.copy_(src.weight)
            theirs.bias.copy_(src.bias.add_(torch.randn_like(src.bias)))  # non-trivial biases and LN shift
        x = torch.randn(3, 5, 24)
        out, want = gm(x), ref(x)
    assert torch.equal(out, want)
    assert not torch.equal(block(gm, 0).wb1.weight, block(gm, 0).wb3.weight)  # two independent matrices


# -- supernet slices -----------------------------------------------------------------------------

H, D = 16, 32


def _super() -> SuperFFN:
    torch.manual_seed(0)
    return SuperFFN(FFNConfig(hidden=H, base_width=D))


def test_supernet_blocks_hold_a_full_gate_matrix():
    sup = _super()
    for b in sup.blocks:
        assert b.wb3.weight.shape == b.wb1.weight.shape == (D, H) and b.wb3.bias.shape == (D,)


@pytest.mark.parametrize("text", GATED)
def test_gated_views_and_inherited_copies_compute_the_same_function(text):
    sup, e = _super(), es.parse(text)
    gm = inherit(sup, e)
    d = D // e.linears()[0].op.ratio
    for b in range(e.linears()[0].op.blocks):
        src, dst = sup.blocks[b], block(gm, b)
        assert torch.equal(dst.wb3.weight, src.wb3.weight[:d, :H]) and torch.equal(dst.wb3.bias, src.wb3.bias[:d])
        assert dst.wb3.weight.data_ptr() != src.wb3.weight.data_ptr()
    x = torch.randn(2, 3, H)
    with torch.no_grad():
        assert torch.equal(lower_shared(e, sup).eval()(x), gm.eval()(x))


def test_gate_gradients_land_in_the_first_rows_of_the_supernet_gate():
    sup = _super()
    gm = lower_shared(es.parse("linear1_2(mul(gelu(linear1_2(x,wb1)),linear1_2(x,wb3)),wb2)"), sup).eval()
    assert dict(gm.named_parameters())["blocks.0.wb3.weight"] is sup.blocks[0].wb3.weight
    (gm(torch.randn(2, 5, H)) * torch.randn(2, 5, H)).sum().backward()
    g = sup.blocks[0].wb3.weight.grad
    assert g[:D // 2].abs().sum() > 0 and torch.count_nonzero(g[D // 2:]) == 0


@pytest.fixture(scope="module")
def tiny_teacher():
    torch.manual_seed(2)
    cfg = transformers.BertConfig(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                  vocab_size=100, max_position_embeddings=64, num_labels=2)
    model = transformers.BertForSequenceClassification(cfg).eval()
    with torch.no_grad():
        for layer in model.bert.encoder.layer:  # HF initialises biases to 0: make them count
            layer.intermediate.dense.bias.copy_(torch.randn(128))
    return model


def test_teacher_loads_the_gate_like_the_value_path(tiny_teacher):
    layer = tiny_teacher.bert.encoder.layer[1]
    w1, b1 = layer.intermediate.dense.weight, layer.intermediate.dense.bias
    sup = SuperFFN(FFNConfig(hidden=32, base_width=64))
    assert load_teacher_ffn(sup, layer.intermediate, layer.output) == 4 * 8  # wb1, wb2, wb3, LN: w and b each
    for b in sup.blocks:
        assert torch.equal(b.wb3.weight, w1[:64]) and torch.equal(b.wb3.bias, b1[:64])
        assert torch.equal(b.wb3.weight, b.wb1.weight) and b.wb3.weight.data_ptr() != b.wb1.weight.data_ptr()
    gm = lower(es.parse(GEGLU), FFNConfig(hidden=32, base_width=96))  # d = 32: the first 32 rows
    assert load_teacher_ffn(gm, layer.intermediate, layer.output) == 8
    assert torch.equal(block(gm, 0).wb3.weight, w1[:32]) and torch.equal(block(gm, 0).wb1.weight, w1[:32])


def test_supernet_student_extracts_gated_candidates(tiny_teacher):
    cfg = StudentConfig(layers=2, hidden=32, heads=2, vocab_size=100, max_position=64, dropout=0.0)
    torch.manual_seed(0)
    sup = SupernetStudent(cfg, tiny_teacher)
    first = sup.supers[0].blocks[0]
    assert torch.equal(first.wb3.weight, first.wb1.weight)  # the gate starts equal to the value path
    with torch.no_grad():  # blocks that differ, like after warm-up (and training that separated the gate)
        for p in sup.supers.parameters():
            p.add_(0.05 * torch.randn_like(p))
    spec = parse_spec(f"[{GEGLU}; {SWIGLU}]")
    ids = torch.randint(0, 100, (3, 7))
    student = sup.extract(spec).eval()
    sup.use_spec(spec)
    sup.eval()
    with torch.no_grad():
        want, got = sup(input_ids=ids).logits, student(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    d = 32 // 3
    mine = block(student.bert.encoder.layer[1].ffn, 0).wb3.weight
    assert torch.equal(mine, sup.supers[1].blocks[0].wb3.weight[:d])
