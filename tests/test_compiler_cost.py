"""compiler.cost: parameters, FLOPs and activation bytes of lowered FFNs and whole students."""
from __future__ import annotations

import operator
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import exprsearch as es
from exprsearch.compiler import (
    Cost,
    FFNConfig,
    StudentConfig,
    build_student,
    ffn_cost,
    ffn_modules,
    graph_cost,
    linear_cost,
    lower,
    student_cost,
)
from exprsearch.compiler.cost import LN_COST

NOTES = Path(__file__).resolve().parent.parent / "docs" / "reference_notes.md"
STANDARD = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"


def _published() -> list[str]:
    """The 6 per-layer EfficientBERT expressions: the table of section 1 of the reference notes."""
    text = NOTES.read_text(encoding="utf-8")
    sec1 = re.search(r"^## 1\..*?(?=^## 2\.)", text, re.M | re.S).group(0)
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*`([^`]+)`\s*\|", sec1, re.M)
    assert [int(k) for k, _ in rows] == [1, 2, 3, 4, 5, 6]
    return [e for _, e in rows]


PUBLISHED = _published()
CASES = [
    (STANDARD, False),
    *[(e, False) for e in PUBLISHED],
    ("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)", False),      # width cut
    ("linear3_2(gelu(linear3_2(max(x,tanh(x)),wb1)),wb2)", False),  # X = 3
    ("linear1_1(add(linear1_1(x,wb1),linear1_1(tanh(x),wb1)),wb2)", True),  # relaxed: two wb1
]
CFGS = [FFNConfig(hidden=24), FFNConfig(hidden=16, base_width=64)]


def test_published_expressions_read_from_notes():
    assert PUBLISHED[0] == "tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))"
    assert PUBLISHED[5] == "leaky_relu(linear2_3(gelu(linear2_3(x,wb1)),wb2))"


@pytest.mark.parametrize("cfg", CFGS, ids=["H24", "H16_D64"])
@pytest.mark.parametrize("text,relaxed", CASES, ids=[c[0] for c in CASES])
def test_params_equal_module_parameters(text, relaxed, cfg):
    e = es.parse(text, strict=not relaxed)
    gm = lower(e, cfg)
    assert ffn_cost(e, cfg).params == sum(p.numel() for p in gm.parameters())


@pytest.mark.parametrize("cfg", CFGS, ids=["H24", "H16_D64"])
@pytest.mark.parametrize("text,relaxed", CASES, ids=[c[0] for c in CASES])
def test_matrix_flops_equal_flop_counter(text, relaxed, cfg):
    e = es.parse(text, strict=not relaxed)
    gm = lower(e, cfg).eval()
    batch, length = 2, 5
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        gm(torch.randn(batch, length, cfg.hidden))
    total = fc.get_total_flops()
    assert total > 0
    assert ffn_cost(e, cfg).mm_flops_per_token == total / (batch * length)


@pytest.mark.parametrize("cfg", CFGS, ids=["H24", "H16_D64"])
@pytest.mark.parametrize("text,relaxed", CASES, ids=[c[0] for c in CASES])
def test_linear_cost_equals_the_lowered_graphs_cost(text, relaxed, cfg):
    e = es.parse(text, strict=not relaxed)
    c = ffn_cost(e, cfg)
    assert linear_cost(e, cfg) == (c.params, c.mm_flops_per_token)


def test_linear_cost_equals_graph_cost_on_sampled_expressions():
    """The search's pricing shortcut agrees with lowering on 150 random valid FFNs (every X_Y)."""
    import random

    from exprsearch.space.generate import Space, sample
    rng, sp, cfg = random.Random(0), Space(), FFNConfig(hidden=24, base_width=48)
    exprs = {sample(sp, rng) for _ in range(150)}
    assert len({(x.linears()[0].op.blocks, x.linears()[0].op.ratio) for x in exprs}) == 16
    for e in exprs:
        c = ffn_cost(e, cfg)
        assert linear_cost(e, cfg) == (c.params, c.mm_flops_per_token), str(e)


def test_standard_ffn_cost_by_hand():
    h, d = 16, 64
    c = ffn_cost(es.parse(STANDARD), FFNConfig(hidden=h, base_width=d))
    assert c.params == (h * d + d) + (d * h + h) + 2 * h
    assert c.mm_flops_per_token == 2 * (h * d + d * h)
    # bias adds (d + H), gelu (8 per element), residual add (H), LayerNorm (LN_COST per element)
    assert c.ew_flops_per_token == d + h + 8 * d + h + LN_COST * h
    # intermediates at 2 bytes: linear (d), gelu (d), linear (H), dropout (H), add (H), LN (H)
    assert c.act_bytes_per_token == 2 * (2 * d + 4 * h)
    assert ffn_cost(es.parse(STANDARD), FFNConfig(hidden=h, base_width=d), dtype_bytes=4).act_bytes_per_token \
        == 4 * (2 * d + 4 * h)
    assert c.flops_per_token == c.mm_flops_per_token + c.ew_flops_per_token
    assert c.as_dict()["flops_per_token"] == c.flops_per_token


def test_bert_base_sized_ffn_numbers():
    """H = 384, D = 1536: BERT's FFN has 1,182,336 parameters (both LayerNorm vectors included)."""
    c = ffn_cost(es.parse(STANDARD), FFNConfig(hidden=384, base_width=1536))
    assert (c.params, c.mm_flops_per_token) == (1182336, 2359296.0)
    assert c.params == 384 * 1536 + 1536 + 1536 * 384 + 384 + 2 * 384


def test_cost_module_doctest():
    import doctest

    import exprsearch.compiler.cost as cost_mod
    res = doctest.testmod(cost_mod, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0


def test_width_cut_is_free():
    """A getitem cut has no FLOPs and no activation bytes."""
    gm = lower(es.parse("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"), FFNConfig(hidden=16))
    graph_cost(gm, 16)
    cuts = [n for n in gm.graph.nodes if n.target is operator.getitem]
    assert len(cuts) == 1
    assert cuts[0].meta["cost"] == {"mm_flops": 0.0, "ew_flops": 0.0, "params": 0.0, "act_bytes": 0}


def test_cost_addition():
    a, b = Cost(1, 2.0, 3.0, 4.0), Cost(10, 20.0, 30.0, 40.0)
    assert a + b == Cost(11, 22.0, 33.0, 44.0)


def test_node_meta_cost_written_for_call_function_nodes():
    gm = lower(es.parse("linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)"), FFNConfig(hidden=16))
    c = graph_cost(gm, 16, tokens=3)
    calls = [n for n in gm.graph.nodes if n.op == "call_function"]
    assert calls
    for n in calls:
        assert set(n.meta["cost"]) == {"mm_flops", "ew_flops", "params", "act_bytes"}, n.name
    linears = [n for n in calls if n.target is F.linear]
    assert len(linears) == 4
    for n in linears:
        assert n.meta["cost"]["mm_flops"] > 0 and n.meta["cost"]["params"] > 0
    for n in calls:
        if n.target in (torch.tanh, torch.maximum, F.gelu, operator.add):
            assert n.meta["cost"]["ew_flops"] > 0 and n.meta["cost"]["mm_flops"] == 0
    # the node costs add up to the totals (tokens = 3 in the probe)
    every = [n for n in gm.graph.nodes if "cost" in n.meta]
    assert sum(n.meta["cost"]["params"] for n in every) == c.params
    assert sum(n.meta["cost"]["mm_flops"] for n in every) == c.mm_flops_per_token * 3
    assert sum(n.meta["cost"]["ew_flops"] for n in every) == c.ew_flops_per_token * 3


# ---------------------------------------------------------------------------------------------
# whole students


def _eager(model):
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    else:
        model.config._attn_implementation = "eager"
    return model


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    spec = es.parse_spec("[linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2); "
                         "tanh(linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2))]")
    return _eager(build_student(spec, StudentConfig(layers=2, hidden=32, heads=2, vocab_size=100,
                                                    num_labels=3)).eval())


def _flops(model, batch: int, length: int) -> int:
    ids = torch.randint(0, 100, (batch, length))
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(input_ids=ids)
    return fc.get_total_flops()


def test_student_params(student):
    c = student_cost(student, 8)
    assert c["params"] == sum(p.numel() for p in student.parameters())
    assert c["ffn_params"] == sum(p.numel() for gm in ffn_modules(student) for p in gm.parameters())
    assert c["ffn"]["params"] == c["ffn_params"]


@pytest.mark.parametrize("length", [8, 16])
def test_student_mm_flops_equal_flop_counter(student, length):
    """Per token times L == FLOPs of one sequence (pooler/classifier are per sequence / L)."""
    c = student_cost(student, length)
    assert c["seq_len"] == length
    assert c["mm_flops_per_token"] * length == _flops(student, 1, length)
    # attention: 8 H^2 + 4 L H per token and layer
    assert c["attention_mm_flops_per_token"] == 2 * (8 * 32 * 32 + 4 * length * 32)


def test_student_mm_flops_odd_length_and_batch(student):
    length = 7
    c = student_cost(student, length)
    assert c["mm_flops_per_token"] * length == pytest.approx(_flops(student, 1, length), rel=1e-12)
    # the head is counted per sequence, so a batch costs batch x one sequence
    assert _flops(student, 3, length) == 3 * _flops(student, 1, length)
