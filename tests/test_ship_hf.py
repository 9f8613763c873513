"""Every student ships (issue 30): a plain student, one with LSRA attention, one with pruned heads,
a LayerDrop (shallower) student and one with early exits are written as Hugging Face directories,
loaded in a process where exprsearch cannot be imported, and give the library's logits; the config
describes each model; the generated FFN file reads like hand-written code; the modeling code is the
package's own, byte for byte; ``pipeline`` and ``AutoModel`` work; ONNX of the full model matches."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest_kd import tokenizer_dir

from exprsearch.compiler import StudentConfig, build_student, ffn_modules, load_student
from exprsearch.compiler.exits import EarlyExitBert, GateExit, PatienceExit, with_exits
from exprsearch.compiler.heads import prune_heads
from exprsearch.compiler.layerdrop import extract_layers
from exprsearch.lang.parsing import parse_spec
from exprsearch.ship.hf import FFN_FILE, write_hf_dir

STD = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"
GEGLU = "linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)"
STACKED = "linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)"  # two blocks, an input transform
CUT = "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"            # an operand cut to the narrower width
SENTENCES = ["a good movie", "the plot was bad and the music was worse", "fine", "i loved every minute of it",
             "boring", "not my kind of film at all, sadly"]
HF_DIR = Path(__file__).resolve().parent.parent / "compiler" / "hf"


def _perturb(model: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    """Move every parameter off its initial value (LayerNorms start at 1/0, biases at 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def _student(text: str, layers: int = 2, heads: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    model = build_student(parse_spec(text), StudentConfig(layers=layers, hidden=32, heads=heads)).eval()
    _perturb(model, seed)
    return model


def _encode(sentences: list[str]) -> dict[str, torch.Tensor]:
    from exprsearch.kd.teacher import load_tokenizer
    return dict(load_tokenizer(tokenizer_dir())(sentences, padding=True, return_tensors="pt"))


def _between(values: torch.Tensor) -> float:
    """A cut halfway between the two middle values (at least two, all distinct)."""
    v = values.flatten().sort().values
    k = len(v) // 2
    return float(v[k - 1] + v[k]) / 2


@torch.no_grad()
def _exit_student():
    """Three layers with exit heads and skipping gates, set on SENTENCES so that every path of the
    gate policy is taken: half the rows leave at the first exit (the threshold is the median of its
    normalised entropy), the second exit is unsure, the first gate runs layer 1 and the second skips
    layer 2 for half the remaining rows (its bias at their median).  Each cut lies halfway between
    two rows' values, so no decision hangs on rounding."""
    from exprsearch.compiler.exits import normalized_entropy
    ee = EarlyExitBert(_student(f"[{GEGLU}; {STD}; {CUT}]", layers=3, seed=4)).eval()
    g = torch.Generator().manual_seed(5)
    for head, scale in zip(ee.exits, (3.0, 0.01)):
        head.out.weight.copy_(torch.randn(head.out.weight.shape, generator=g) * scale)
    ee.gates[0].lin.bias.fill_(-5.0)  # p(skip layer 1) = 0.007
    ee.gates[1].lin.weight.copy_(torch.randn(ee.gates[1].lin.weight.shape, generator=g))
    ee.gates[1].lin.bias.zero_()
    inputs = _encode(SENTENCES)
    states = ee.student(**inputs, output_hidden_states=True).hidden_states
    entropy = normalized_entropy(ee.exits[0](states[1]))
    threshold = _between(entropy)
    stay = entropy >= threshold
    ee.gates[1].lin.bias.fill_(-_between(ee.gates[1].lin(states[2][stay, 0])))
    return ee, GateExit(threshold=threshold)


def _students() -> dict[str, tuple[torch.nn.Module, object]]:
    """name -> (the library model that is shipped, the EarlyExitBert it came from or None)."""
    pruned = _student(f"[{STD}; {CUT}]", heads=4, seed=2)
    prune_heads(pruned, {0: [1, 3], 1: [2]})  # not the first heads: the config keeps which
    deep = _student(f"[{STD}; {CUT}; {GEGLU}]", layers=3, seed=3)
    ee, policy = _exit_student()
    return {
        "plain": (_student(f"[{GEGLU}; {STACKED}]", seed=0), None),
        "lsra": (_student(f"[layer(attn=lsra(heads=1, kernel=3), ffn={STD}); {CUT}]", seed=1), None),
        "pruned": (pruned, None),
        "layerdrop": (extract_layers(deep, [0, 2]).eval(), None),
        "exits": (with_exits(ee, policy).eval(), (ee, policy)),
    }


LOAD = r'''
import sys, json, torch
sys.modules["exprsearch"] = None   # not installed, as far as this process knows
from transformers import (AutoModel, AutoModelForSequenceClassification, AutoTokenizer,
                          BertForSequenceClassification, pipeline)
sentences = json.loads(sys.argv[1])
out = {}
for path in sys.argv[2:]:
    model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True).eval()
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    enc = tok(sentences, padding=True, return_tensors="pt")
    r = {"cls": type(model).__name__, "module": type(model).__module__,
         "ffn_module": type(model.bert.encoder.layer[0].ffn).__module__,
         "inputs": {k: v.tolist() for k, v in enc.items()}}
    with torch.no_grad():
        r["logits"] = model(**enc).logits.tolist()
        if model.config.exit_layers is not None:
            early = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True,
                                                                       early_exit=True).eval()
            res = early(**enc)
            r["early"] = {"logits": res.logits.tolist(), "layers_run": res.layers_run.tolist()}
    base, info = AutoModel.from_pretrained(path, trust_remote_code=True, output_loading_info=True)
    r["base"] = {"cls": type(base).__name__, "missing": sorted(info["missing_keys"])}
    r["pipeline"] = [p["label"] for p in pipeline("text-classification", model=path, trust_remote_code=True)(sentences)]
    try:
        _, info = BertForSequenceClassification.from_pretrained(path, output_loading_info=True)
        r["bert"] = {"missing": sorted(info["missing_keys"])}
    except Exception as err:
        r["bert"] = {"refused": f"{type(err).__name__}: {err}"[:300]}
    out[path] = r
print("\nRESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """name -> (directory, library model, exit wrapper and policy or None), and what a process
    without exprsearch made of each directory."""
    root = tmp_path_factory.mktemp("ship_hf")
    models = _students()
    dirs = {}
    for name, (model, ee) in models.items():
        dirs[name] = write_hf_dir(model, root / name, tokenizer_dir(), ["negative", "positive"])
    proc = subprocess.run([sys.executable, "-c", LOAD, json.dumps(SENTENCES), *map(str, dirs.values())],
                          capture_output=True, text=True, cwd="/", timeout=600,
                          env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                               "HF_HOME": str(root / "hf_home")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    return {name: (dirs[name], models[name][0], models[name][1], loaded[str(dirs[name])]) for name in models}


NAMES = ["plain", "lsra", "pruned", "layerdrop", "exits"]


def _inputs(got: dict) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v) for k, v in got["inputs"].items()}


@pytest.mark.parametrize("name", NAMES)
def test_it_loads_without_exprsearch_and_gives_the_librarys_logits(shipped, name):
    path, model, _, got = shipped[name]
    assert got["cls"] == "ExprBertForSequenceClassification"
    assert got["module"].startswith("transformers_modules.") and got["ffn_module"].endswith(".ffn_exprbert")
    with torch.no_grad():
        want = model(**_inputs(got)).logits
    torch.testing.assert_close(torch.tensor(got["logits"]), want, atol=1e-5, rtol=0)
    assert got["base"] == {"cls": "ExprBertModel", "missing": []}  # AutoModel: the encoder, every weight loaded
    labels = want.argmax(-1).tolist()
    assert got["pipeline"] == [["negative", "positive"][i] for i in labels]
    # the library reads its own directory back too: the config's expressions lowered, the same logits
    with torch.no_grad():
        torch.testing.assert_close(load_student(path).eval()(**_inputs(got)).logits, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_a_plain_bert_does_not_silently_load_random_ffns(shipped, name):
    got = shipped[name][3]["bert"]
    if "refused" not in got:  # transformers loads what matches and reports every FFN weight as missing
        assert "bert.encoder.layer.0.intermediate.dense.weight" in got["missing"]
        assert "bert.encoder.layer.1.output.dense.weight" in got["missing"]


def _linear_shapes(ffn: torch.nn.Module) -> dict[str, list[int]]:
    return {name.split(".")[2]: list(p.shape)[::-1] for name, p in ffn.named_parameters()
            if name.startswith("blocks.0.") and name.endswith(".weight") and ".ln." not in name}


@pytest.mark.parametrize("name", NAMES)
def test_the_config_describes_the_model(shipped, name):
    path, model, ee, _ = shipped[name]
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model_type"] == "exprbert" and cfg["architectures"] == ["ExprBertForSequenceClassification"]
    assert cfg["auto_map"] == {"AutoConfig": "configuration_exprbert.ExprBertConfig",
                               "AutoModel": "modeling_exprbert.ExprBertModel",
                               "AutoModelForSequenceClassification": "modeling_exprbert.ExprBertForSequenceClassification"}
    assert "hidden_act" not in cfg and "intermediate_size" not in cfg  # no BERT FFN to describe
    layers = list(model.bert.encoder.layer)
    assert cfg["num_hidden_layers"] == len(layers) == len(cfg["ffn_layers"]) == len(cfg["attention_layers"])
    for i, (entry, layer, e) in enumerate(zip(cfg["ffn_layers"], layers, model.spec.layers)):
        assert entry["expression"] == str(e)
        assert entry["blocks"] == len(list(layer.ffn.blocks.children()))
        assert entry["linears"] == _linear_shapes(layer.ffn)
    kinds = [a["type"] for a in cfg["attention_layers"]]
    if name == "lsra":
        assert cfg["attention_layers"][0] == {"type": "lsra", "heads": 1, "kernel": 3} and kinds[1] == "mha"
    else:
        assert kinds == ["mha"] * len(layers)
    # heads: the config says which were removed; the model has the rest
    assert cfg.get("pruned_heads", {}) == ({"0": [0, 2], "1": [0, 1, 3]} if name == "pruned" else {})
    for i, layer in enumerate(layers):
        s = layer.attention.self
        if cfg["attention_layers"][i]["type"] == "mha":
            assert s.query.out_features // s.attention_head_size == \
                cfg["num_attention_heads"] - len(cfg.get("pruned_heads", {}).get(str(i), []))
    if name == "layerdrop":
        assert [e["expression"] for e in cfg["ffn_layers"]] == [STD, GEGLU]
    if name == "exits":
        assert cfg["exit_layers"] == [0, 1] and cfg["exit_policy"] == "gate"
        assert cfg["exit_threshold"] == pytest.approx(ee[1].threshold)
        assert cfg["early_exit"] is False
    else:
        assert cfg.get("exit_layers") is None


@pytest.mark.parametrize("name", NAMES)
def test_the_generated_ffn_file_reads_like_hand_written_code(shipped, name):
    path, model, _, _ = shipped[name]
    src = (path / FFN_FILE).read_text()
    assert "torch._C" not in src and "getattr(" not in src and "torch.fx" not in src and "GraphModule" not in src
    assert not [line for line in src.splitlines() if line.rstrip().endswith("= None")]
    tree = ast.parse(src)
    slots = {s for entry in model.config.ffn_layers for s in entry["linears"]}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):  # public torch / nn.functional ops, and the block's own linears
            f = node.func
            assert isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name), ast.unparse(node)
            owner = {"torch": torch, "F": F}.get(f.value.id)
            if owner is None:
                assert f.value.id == "b" and f.attr in slots, ast.unparse(node)
            else:
                assert not f.attr.startswith("_") and callable(getattr(owner, f.attr)), ast.unparse(node)
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    distinct = list(dict.fromkeys(model.spec.layers))
    assert len(classes) == len(distinct)
    assert f"LAYER_FFNS = [{', '.join(f'Layer{model.spec.layers.index(e)}FFN' for e in model.spec.layers)}]" in src
    if name == "plain":  # a GEGLU layer reads like a hand-written GEGLU
        assert "        wb1 = b.wb1(x)\n        gelu_wb1 = F.gelu(wb1)\n        wb3 = b.wb3(x)\n" \
               "        mul_gelu_wb1_wb3 = torch.mul(gelu_wb1, wb3)\n        return b.wb2(mul_gelu_wb1_wb3)\n" in src
        assert "max_x_tanh_x = torch.maximum(x, tanh_x)" in src


def test_the_directory_holds_the_packages_own_code(shipped):
    path, model, _, _ = shipped["lsra"]
    from exprsearch.compiler.hf import modeling_exprbert
    assert type(model) is modeling_exprbert.ExprBertForSequenceClassification  # the library's student is the class
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "configuration_exprbert.py", "modeling_exprbert.py",
            "lsra_exprbert.py", "exits_exprbert.py", FFN_FILE, "tokenizer_config.json"} <= names
    for f in ("configuration_exprbert.py", "modeling_exprbert.py", "lsra_exprbert.py", "exits_exprbert.py"):
        assert (path / f).read_bytes() == (HF_DIR / f).read_bytes(), f  # copied verbatim
    assert (path / FFN_FILE).read_bytes() != (HF_DIR / FFN_FILE).read_bytes()  # the one generated file


@pytest.mark.parametrize("path", sorted(HF_DIR.glob("*.py")), ids=lambda p: p.name)
def test_the_shipped_modules_import_only_torch_and_transformers(path):
    allowed = {"torch", "transformers", "__future__", "math", "dataclasses", "typing"}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            assert {a.name.split(".")[0] for a in node.names} <= allowed, ast.unparse(node)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 1 or node.module.split(".")[0] in allowed, ast.unparse(node)


def test_early_exit_is_off_by_default_and_a_config_value_turns_it_on(shipped):
    _, model, (ee, policy), got = shipped["exits"]
    inputs = _inputs(got)
    with torch.no_grad():
        static = ee.student(**inputs).logits
        want, used = ee.infer(inputs, policy)  # the library's early exit on the same rows
    torch.testing.assert_close(torch.tensor(got["logits"]), static, atol=1e-5, rtol=0)  # off: the last layer
    torch.testing.assert_close(torch.tensor(got["early"]["logits"]), want, atol=1e-5, rtol=0)
    assert got["early"]["layers_run"] == used.tolist()
    assert set(used.tolist()) == {1, 2, 3}  # left at the first exit; skipped layer 2; ran every layer
    model.config.early_exit = True  # the same switch in the library's copy
    with torch.no_grad():
        out = model(**inputs)
    model.config.early_exit = False
    torch.testing.assert_close(out.logits, want, atol=1e-6, rtol=0)
    assert out.layers_run.tolist() == used.tolist()


def test_other_exit_rules_ship_too(tmp_path):
    ee, _ = _exit_student()
    policy = PatienceExit(patience=1)
    model = with_exits(ee, policy).eval()
    assert model.gates is None and model.config.exit_policy == "patience" and model.config.exit_patience == 1
    ids = torch.randint(1000, 2000, (5, 9))
    with torch.no_grad():
        want, used = ee.infer({"input_ids": ids}, policy)
        model.config.early_exit = True
        out = model(input_ids=ids)
    torch.testing.assert_close(out.logits, want, atol=1e-6, rtol=0)
    assert out.layers_run.tolist() == used.tolist()


@pytest.mark.parametrize("name", NAMES)
def test_onnx_of_the_full_model_matches(shipped, name, tmp_path):
    pytest.importorskip("onnxruntime")
    from exprsearch.ship.distill import check_onnx
    _, model, _, _ = shipped[name]
    result = check_onnx(model, tmp_path / "model.onnx")  # raises beyond 1e-4
    assert result["onnx"] == "model.onnx" and result["max_abs_diff"] < 1e-4


def test_library_ffns_keep_the_compiled_graphs(shipped):
    """The library trains the fx graphs; only the shipped copy runs the generated classes."""
    _, model, _, _ = shipped["plain"]
    assert all(isinstance(gm, torch.fx.GraphModule) for gm in ffn_modules(model))
