"""Issue 8: attention, heads and depth in the model spec.

* the spec language: ``layer(attn=..., ffn=...)`` items and ``model(...)`` fields, round trips, errors;
* LSRA (Lite Transformer) against a hand-written reference, its cost model against FLOP counting;
* head pruning: the pruned model equals the masked model, shapes and parameter counts drop;
* LayerDrop: extracted shallower students equal the supernet's forward with those layers skipped;
* the search and the evaluator accept the new dimensions.
"""
from __future__ import annotations

import copy
import math
import random

import pytest
import torch
from conftest_search import (  # noqa: F401
    easy_glue,
    kd_cache,
    one_thread,
    run_search,
    search_ecfg,
    tiny_teacher,
)

from exprsearch.compiler import StudentConfig, build_student, student_cost
from exprsearch.compiler.attention import LSRASelfAttention, attention_mm_flops, lsra_params
from exprsearch.compiler.cost import spec_params
from exprsearch.compiler.heads import head_importance, head_masks, heads_of, keep_top, prune_heads
from exprsearch.compiler.layerdrop import every_other, extract_layers, sample_skips, set_skips
from exprsearch.compiler.lower import FFNConfig
from exprsearch.errors import ConfigError, DSLError
from exprsearch.lang.expr import AttnSpec, ModelSpec
from exprsearch.lang.parsing import parse, parse_spec, read_spec

STD = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"
L5 = "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"
TINY = StudentConfig(layers=4, hidden=32, heads=4, vocab_size=100, max_position=64, dropout=0.0)


def _ids(b: int = 3, n: int = 9, pad_from: tuple[int, ...] = (9, 5, 2)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 100, (b, n), generator=g)
    mask = torch.zeros(b, n, dtype=torch.long)
    for i, p in enumerate(pad_from):
        mask[i, :p] = 1
    return {"input_ids": ids * mask, "attention_mask": mask}


# -- the spec language ---------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    f"layer(attn=mha(heads=6), ffn={L5})",
    f"[model(layers=2, hidden=384); layer(attn=lsra(heads=3, kernel=5), ffn={STD}); {L5}]",
    f"model(layers=3)\nlayer(attn=mha(heads=2), ffn={STD})\n",
])
def test_layer_items_round_trip(text):
    spec = parse_spec(text)
    assert parse_spec(str(spec)) == spec
    assert parse_spec(spec.to_lines()) == spec
    assert all(isinstance(a, (AttnSpec, type(None))) for a in (spec.attn or ()))


def test_model_fields_and_broadcast():
    spec = parse_spec(f"model(layers=3, hidden=64)\nlayer(attn=mha(heads=2), ffn={STD})")
    assert len(spec) == 3 and spec.hidden == 64
    assert spec.attn == (AttnSpec("mha", heads=2),) * 3
    assert str(spec.with_layers([0, 2])).startswith("[model(layers=2, hidden=64)")


def test_plain_specs_are_unchanged(tmp_path):
    spec = parse_spec(f"[{STD}; {L5}]")
    assert spec.plain and spec.attn is None and str(spec) == f"[{STD}; {L5}]"
    f = tmp_path / "m.ffn"
    f.write_text(f"{STD}\n{L5}\n")
    assert read_spec(f) == spec


@pytest.mark.parametrize("text, msg", [
    (f"layer(attn=mha(heads=x), ffn={STD})", "expected a whole number"),
    (f"layer(atn=mha(heads=2), ffn={STD})", "unknown name 'atn'"),
    (f"[{STD}; model(layers=2)]", "model(...) may appear once, as the first item"),
    (f"layer(attn=mha(heads=2), ffn={STD})", "a model spec"),  # parse(): one expression only
    (f"[model(layers=2); layer(attn=mha(), ffn=linear1_1(relu(relu(linear1_1(x,wb1))),wb2)); {STD}]",
     "layer 1: relu directly inside relu"),
])
def test_spec_errors_have_a_caret(text, msg):
    with pytest.raises(DSLError) as info:
        parse(text) if msg == "a model spec" else parse_spec(text)
    assert msg in str(info.value) and "^" in str(info.value)


def test_too_many_heads_is_a_config_error():
    with pytest.raises(ConfigError, match="the model has 4 heads"):
        build_student(f"layer(attn=mha(heads=8), ffn={STD})", TINY)
    with pytest.raises(ConfigError, match=r"lsra\(heads=3, kernel=7\) needs .* a multiple of the heads"):
        build_student(ModelSpec((parse(STD),), (AttnSpec("lsra", heads=3),)), TINY)  # 16 / 3
    with pytest.raises(ValueError, match="kernel"):  # the module itself: the shipped code's error type
        LSRASelfAttention(hidden=32, heads=2, kernel=4)


# -- LSRA ------------------------------------------------------------------------------------------

def _lsra_reference(m: LSRASelfAttention, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Lite Transformer's LSRA written out by hand: per-head softmax attention with a key padding
    mask on the first half; GLU, zeroed padding, a depthwise convolution (explicit sum over the
    kernel taps) and a linear map on the second half."""
    c = m.core
    b, n, hidden = x.shape
    half, heads = hidden // 2, m.heads
    hd = half // heads
    xa, xc = x[..., :half], x[..., half:]
    q, k, v = (xa @ lin.weight.T + lin.bias for lin in (c.query, c.key, c.value))
    att = torch.zeros(b, n, half)
    for h in range(heads):
        sl = slice(h * hd, (h + 1) * hd)
        s = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(hd)
        s = s.masked_fill(~keep[:, None, :], float("-inf"))
        att[..., sl] = torch.softmax(s, dim=-1) @ v[..., sl]
    g = xc @ c.glu.weight.T + c.glu.bias
    u = g[..., :half] * torch.sigmoid(g[..., half:]) * keep[..., None]
    w = c.conv.weight[:, 0, :]  # (half, kernel)
    r = w.shape[1] // 2
    conv = torch.zeros(b, n, half) + c.conv.bias
    for t in range(n):
        for j in range(w.shape[1]):
            s = t + j - r
            if 0 <= s < n:
                conv[:, t] += w[:, j] * u[:, s]
    return torch.cat([att, conv @ c.conv_out.weight.T + c.conv_out.bias], dim=-1)


@pytest.mark.parametrize("kernel", [1, 3, 7])
def test_lsra_matches_a_hand_written_reference(kernel):
    torch.manual_seed(kernel)
    m = LSRASelfAttention(hidden=16, heads=2, kernel=kernel, dropout=0.0).eval()
    x = torch.randn(3, 7, 16)
    keep = torch.ones(3, 7, dtype=torch.bool)
    keep[1, 4:] = False
    keep[2, 1:] = False
    out, _ = m(x, keep[:, None, None, :])
    torch.testing.assert_close(out, _lsra_reference(m, x, keep), atol=1e-5, rtol=1e-5)
    add = torch.zeros(3, 1, 1, 7).masked_fill(~keep[:, None, None, :], -1e4)  # HF's additive form
    torch.testing.assert_close(m(x, add)[0], out)
    torch.testing.assert_close(m(x, keep.long())[0], out)  # a (B, L) 0/1 integer mask means the same
    # padding never leaks into real positions (through attention or the convolution)
    y = x.clone()
    y[~keep] = 100.0
    torch.testing.assert_close(m(y, keep[:, None, None, :])[0][keep], out[keep])


def test_lsra_converts_to_half_precision():
    # LSRACore kept its channel split in ``self.half``, shadowing nn.Module.half(): calling it raised
    # "'int' object is not callable" (found by mypy: "Cannot assign to a method")
    m = LSRASelfAttention(hidden=32, heads=4, kernel=5, dropout=0.0)
    assert m.core.half() is m.core and m.core.query.weight.dtype == torch.float16
    x = torch.randn(1, 6, 32)
    ref = m.float()(x, torch.ones(1, 6, dtype=torch.bool))[0]
    assert torch.allclose(m.core.float()(x, torch.zeros(1, 1, 1, 6), torch.ones(1, 6, 1)), ref)

def test_lsra_is_an_fx_graph_and_its_cost_matches_counted_flops():
    from torch.utils.flop_counter import FlopCounterMode

    from exprsearch.compiler.attention import lsra_graph
    m = LSRASelfAttention(hidden=32, heads=4, kernel=5, dropout=0.0).eval()
    gm = lsra_graph(32, 4, 5)
    assert isinstance(gm, torch.fx.GraphModule) and "conv" in gm.code
    assert dict(gm.named_parameters()).keys() == dict(m.core.named_parameters()).keys()  # the same program, traced
    assert lsra_params(32, 5) == sum(p.numel() for p in m.core.parameters())
    n = 16
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:  # CPU's fused SDPA is not counted
        m(torch.randn(1, n, 32), torch.ones(1, 1, 1, n, dtype=torch.bool))
    assert fc.get_total_flops() / n == pytest.approx(attention_mm_flops("lsra", 32, 4, n, 5))


def test_lsra_and_pruned_students_are_costed_exactly():
    spec = parse_spec(f"[layer(attn=lsra(heads=2, kernel=3), ffn={STD}); layer(attn=mha(heads=1), ffn={L5});"
                      f" {STD}; layer(attn=mha(heads=4), ffn={STD})]")
    model = build_student(spec, TINY).eval()
    assert isinstance(model.bert.encoder.layer[0].attention.self, LSRASelfAttention)
    assert [heads_of(layer) for layer in model.bert.encoder.layer[1:]] == [1, 4, 4]
    want = spec_params(list(spec.layers), FFNConfig(hidden=32), vocab=100, max_position=64, type_vocab=2,
                       num_labels=2, attn=spec.attn, heads=4)
    assert want == sum(p.numel() for p in model.parameters())
    full = build_student(STD, TINY)
    assert student_cost(model, 32)["params"] < student_cost(full, 32)["params"]
    assert student_cost(model, 32)["mm_flops_per_token"] < student_cost(full, 32)["mm_flops_per_token"]
    out = model(**_ids()).logits
    assert out.shape == (3, 2) and torch.isfinite(out).all()


# -- head pruning ----------------------------------------------------------------------------------

@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_pruning_equals_masking(attn):
    torch.manual_seed(0)
    model = build_student(STD, TINY).eval()
    model.config._attn_implementation = attn
    batch = _ids()
    keep = {0: [1, 3], 1: [0], 2: [0, 1, 2, 3], 3: [2]}
    masks = torch.zeros(4, 4)
    for i, hs in keep.items():
        masks[i, hs] = 1.0
    with torch.no_grad(), head_masks(model, masks):
        masked = model(**batch).logits
    pruned = copy.deepcopy(model)
    prune_heads(pruned, keep)
    for i, layer in enumerate(pruned.bert.encoder.layer):
        s = layer.attention.self
        assert heads_of(layer) == len(keep[i])
        assert s.query.weight.shape == (8 * len(keep[i]), 32) == s.value.weight.shape
        assert layer.attention.output.dense.weight.shape == (32, 8 * len(keep[i]))
    with torch.no_grad():
        torch.testing.assert_close(pruned(**batch).logits, masked, atol=1e-5, rtol=1e-5)
    dropped = sum(4 - len(v) for v in keep.values())
    assert sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in pruned.parameters()) == \
        dropped * (3 * (32 * 8 + 8) + 32 * 8)


class _Batches:
    def __init__(self, batch: dict) -> None:
        self.batch = batch

    def forever(self):
        while True:
            yield self.batch


def test_head_importance_scores_and_keep_top():
    torch.manual_seed(0)
    model = build_student(STD, TINY)
    batch = {**_ids(), "labels": torch.tensor([0, 1, 1])}
    imp = head_importance(model, _Batches(batch), lambda b: model(**b).loss, steps=2)
    assert imp.shape == (4, 4) and (imp >= 0).all()
    torch.testing.assert_close(imp.norm(dim=1), torch.ones(4))
    assert model.training  # restored
    keep = keep_top(imp, [2, 1, 4, 3])
    assert [len(v) for v in keep.values()] == [2, 1, 4, 3]
    assert keep[1] == [int(imp[1].argmax())]
    assert imp[0, keep[0]].min() >= imp[0, [h for h in range(4) if h not in keep[0]]].max()


# -- LayerDrop -------------------------------------------------------------------------------------

def test_every_other_rule():
    assert every_other(0.5, 6) == [1, 3, 5]
    assert every_other(0.33, 6) == [1, 2, 4, 5] and every_other(0.34, 6) == [1, 3, 5]  # floor(1/p)
    for p in (1.0, 0.6):  # above 0.5 the rule would drop every layer
        with pytest.raises(ConfigError, match="every-other"):
            every_other(p, 6)
    rng = random.Random(0)
    assert all(len(sample_skips(3, 0.99, rng)) < 3 for _ in range(50))
    assert sum(len(sample_skips(4, 0.5, rng)) for _ in range(200)) == pytest.approx(400, rel=0.2)


@pytest.mark.parametrize("keep", [[1, 3], [0, 1, 2], [2]])
def test_extracted_student_equals_the_masked_forward(keep):
    torch.manual_seed(1)
    spec = parse_spec(f"[{STD}; {L5}; layer(attn=mha(heads=2), ffn={STD}); layer(attn=lsra(heads=2), ffn={L5})]")
    model = build_student(spec, TINY).eval()
    batch = _ids()
    set_skips(model, [i for i in range(4) if i not in keep])
    with torch.no_grad():
        skipped = model(**batch).logits
        model.config._attn_implementation = "eager"
        small = extract_layers(model, keep).eval()
        assert small.config._attn_implementation == "eager"
        assert small.config.num_hidden_layers == len(keep)
        assert small.spec == spec.with_layers(keep)
        torch.testing.assert_close(small(**batch).logits, skipped)
        set_skips(model, [])
        assert not torch.allclose(model(**batch).logits, skipped)
    with pytest.raises(ConfigError):
        extract_layers(model, [0, 0])


# -- search and evaluation -------------------------------------------------------------------------

def test_sampler_draws_attention_and_depth():
    from exprsearch.space.generate import Space
    from exprsearch.space.samplers import RandomSampler, parse_attn_choices
    choices = parse_attn_choices("std|mha(heads=2)|lsra(heads=2, kernel=3)")
    assert choices == [None, AttnSpec("mha", heads=2), AttnSpec("lsra", heads=2, kernel=3)]
    s = RandomSampler([Space(max_depth=3, max_size=5)] * 4, random.Random(0), attn_choices=choices, depths=[2, 4])
    specs = [s.propose() for _ in range(40)]
    assert {len(x) for x in specs} == {2, 4}
    kinds = {a.kind if a else "std" for x in specs for a in (x.attn or (None,))}
    assert kinds == {"std", "mha", "lsra"}
    with pytest.raises(ConfigError, match=r"attention choice 'gelu\(x\)': attn= takes mha"):  # an option's error
        parse_attn_choices("mha(heads=2)|gelu(x)")
    with pytest.raises(ConfigError, match="kernel must be odd"):  # a same-length convolution
        parse_attn_choices("lsra(heads=2, kernel=4)")


def test_priced_attention_flops_equal_the_built_model():
    from exprsearch.compiler.attention import layer_attention_flops, module_attention_flops
    spec = parse_spec(f"[layer(attn=lsra(heads=2, kernel=3), ffn={STD}); layer(attn=mha(heads=1), ffn={STD});"
                      f" {STD}; layer(attn=lsra(), ffn={STD})]")
    model = build_student(spec, TINY)
    for a, layer in zip(spec.attn, model.bert.encoder.layer):
        assert layer_attention_flops(a, 32, 4, 24) == module_attention_flops(layer, 32, 24)


def test_evaluator_scores_shallower_pruned_and_lsra_students(tmp_path, search_ecfg, one_thread):
    """A LayerDrop-warmed supernet of 4 layers gives 2-layer students (every-other rule), heads
    pruned by importance, LSRA layers; each trains, scores, and is costed as built."""
    import dataclasses

    from exprsearch.kd.evaluate import Evaluator
    ecfg = dataclasses.replace(search_ecfg, layers=4, layerdrop=0.5, head_importance_steps=2, cache_dir=str(tmp_path))
    ev = Evaluator(ecfg, log=lambda m: None)
    full = ev.evaluate(parse_spec(STD))
    results = {name: ev.evaluate(parse_spec(text)) for name, text in {
        "half": f"[{STD}; {L5}]",
        "pruned": f"layer(attn=mha(heads=1), ffn={STD})",
        "lsra": f"layer(attn=lsra(heads=1, kernel=3), ffn={STD})",
        "mixed": f"[layer(attn=lsra(heads=1, kernel=3), ffn={STD}); layer(attn=mha(heads=1), ffn={L5})]"}.items()}
    for name, r in {"full": full, **results}.items():
        assert r.status == "ok", (name, r.reason)
        assert r.score is not None and r.params > 0
    assert len(parse_spec(results["half"].spec, strict=False)) == 2
    assert results["half"].params < full.params and results["pruned"].params < full.params
    assert results["half"].flops_per_token < full.flops_per_token
    assert "mha(heads=1)" in results["pruned"].spec and "lsra(heads=1, kernel=3)" in results["lsra"].spec
    assert len(parse_spec(results["mixed"].spec, strict=False)) == 2  # LSRA + importance-pruned, half depth
    # attention-map KD has no teacher-shaped maps to match for LSRA / pruned heads: a clear per-candidate failure
    with pytest.raises(ConfigError, match="layerdrop"):
        Evaluator(dataclasses.replace(ecfg, w_attn=1.0), log=lambda m: None)
    bad = Evaluator(dataclasses.replace(ecfg, w_attn=1.0, layerdrop=0.0), log=lambda m: None).evaluate(
        parse_spec(f"layer(attn=lsra(heads=1), ffn={STD})"))
    assert bad.status == "failed" and "w_attn" in bad.reason


def test_search_over_attention_and_depth(tmp_path, search_ecfg, one_thread):
    import dataclasses

    from exprsearch.search.leaderboard import leaderboard_table
    ecfg = dataclasses.replace(search_ecfg, layers=4, layerdrop=0.5)
    search, _summary, rows = run_search(tmp_path / "runs.db", ecfg, candidates=8, sampler="random",
                                        attn_choices="std|mha(heads=1)|lsra(heads=1, kernel=3)", depths=(2, 4))
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    specs = [parse_spec(r["spec"], strict=False) for r in rows]
    assert {len(s) for s in specs} == {2, 4}
    assert any(s.attn and any(a is not None and a.kind == "lsra" for a in s.attn) for s in specs)
    for r, s in zip(rows, specs):  # the stored price is the cost model's price of the whole model
        assert r["params"] == search.price(s)[0]
    assert "lsra" in leaderboard_table(rows, top=8) or "mha(heads=1)" in leaderboard_table(rows, top=8)
