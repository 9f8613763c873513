"""``exprsearch distill`` (issue 25 item 1) on the CPU with a tiny teacher: the final protocol
over seeds, then a Hugging Face directory that loads and runs where exprsearch is not installed,
an ONNX file that agrees with PyTorch, a model card, and nothing half-written when it stops."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest_ship import load_without_exprsearch
from conftest_search import easy_glue, kd_cache, one_thread, quiet, search_ecfg, tiny_teacher  # noqa: F401

from exprsearch.cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"


def _args(cfg, out: Path, *more: str) -> list[str]:
    return ["distill", SPEC, "--task", "SST-2", "-o", str(out), "--data-dir", cfg.data_dir, "--teacher", cfg.teacher,
            "--cache-dir", cfg.cache_dir, "--device", "cpu", "--layers", "2", "--max-len", "32", "--batch-size", "16",
            "--max-train", "64", "--max-dev", "32", "--warmup-steps", "5", "--teacher-epochs", "0.5", "--lr", "1e-3",
            "--epochs", "2", "--eval-every", "2", "--heldout-rows", "12", "--min-steps", "4", *more]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, search_ecfg):
    out = tmp_path_factory.mktemp("ship") / "student"
    assert main(_args(search_ecfg, out, "--seeds", "2", "--json")) == 0
    return out


def test_the_directory_holds_everything_a_user_needs(shipped):
    names = {p.name for p in shipped.iterdir()}
    assert {"config.json", "model.safetensors", "configuration_exprbert.py", "modeling_exprbert.py", "ffn_exprbert.py",
            "model.onnx", "README.md", "tokenizer_config.json"} <= names and {"tokenizer.json", "vocab.txt"} & names
    cfg = json.loads((shipped / "config.json").read_text())
    assert cfg["model_type"] == "exprbert" and cfg["auto_map"]["AutoModelForSequenceClassification"]
    assert [f["expression"] for f in cfg["ffn_layers"]] == [SPEC, SPEC]  # the config describes both layers
    assert set(cfg["id2label"].values()) == {"0", "1"}
    card = (shipped / "README.md").read_text()
    assert "| standard-FFN student (`[linear1_" in card and "same protocol and seeds" in card
    assert "(2 seeds)" in card and "teacher" in card and "FFN parameters" in card
    assert "training seeds 10000, 10001 (none a search seed)" in card  # fresh seeds
    assert "latency, CPU, batch 1" in card and "non-embedding" in card and "exprsearch distill" in card
    assert "x the standard-FFN student timed alongside" in card and "(median of 7)" in card
    # the rows that trained, chose and scored it (the options cut both sets), and the constant predictor beside it
    assert "**Trained on only 64 of " in card and "**scored on only 32 of 100 dev rows**" in card
    assert "| this student (seed 1000" in card and "(the best constant on these rows) |" in card
    assert not [p for p in shipped.parent.iterdir() if p.name.startswith(".")]  # nothing left aside


def test_it_loads_and_runs_without_exprsearch_and_a_plain_bert_does_not_load_random_ffns_silently(shipped, tmp_path):
    got = load_without_exprsearch(shipped, tmp_path, ["a good movie", "the plot was bad and the music"], as_bert=True)
    assert got["cls"] == "ExprBertForSequenceClassification"
    assert "bert.encoder.layer.0.intermediate.dense.weight" in got["bert_missing"]
    from exprsearch.compiler import load_student
    mine = load_student(shipped).eval()
    with torch.no_grad():
        want = mine(input_ids=torch.tensor(got["input_ids"]), attention_mask=torch.tensor(got["attention_mask"]),
                    token_type_ids=torch.tensor(got["token_type_ids"])).logits
    assert torch.allclose(torch.tensor(got["logits"]), want, atol=1e-5)


def test_onnx_matches_pytorch(shipped):
    ort = pytest.importorskip("onnxruntime")
    from exprsearch.compiler import load_student
    model = load_student(shipped).eval()
    sess = ort.InferenceSession(str(shipped / "model.onnx"), providers=["CPUExecutionProvider"])
    ids = torch.randint(1000, 2000, (4, 21))
    mask, types = torch.ones_like(ids), (torch.arange(21) > 9).long().expand(4, 21).contiguous()
    got = sess.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()})[0]
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits.numpy()
    assert abs(got - want).max() < 1e-4


def test_a_stop_half_way_leaves_no_directory(tmp_path, search_ecfg, monkeypatch):
    import exprsearch.ship.distill as distill_mod

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(distill_mod, "check_onnx", interrupted)
    out = tmp_path / "student"
    assert main(_args(search_ecfg, out)) == 130
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_kept_unless_overwrite(tmp_path, search_ecfg, capsys):
    out = tmp_path / "student"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert main(_args(search_ecfg, out)) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "mine.txt").read_text() == "keep me"


def test_distilling_a_runs_best_records_it_for_the_report(tmp_path, search_ecfg):
    from conftest_search import run_search

    from exprsearch.search.store import Store
    search, _, rows = run_search(tmp_path / "runs.db", search_ecfg, candidates=3)
    best = max((r for r in rows if r["status"] == "ok"), key=lambda r: r["score"])
    out = tmp_path / "student"
    args = _args(search_ecfg, out, "--store", str(tmp_path / "runs.db"))
    args[1] = "last"
    assert main(args) == 0
    (art,) = Store(tmp_path / "runs.db", readonly=True).artifacts(search.run_id)
    assert art["dir"] == str(out) and art["spec"] == best["spec"] and art["task"] == "SST-2"
    assert f"run {search.run_id}" in (out / "README.md").read_text()  # the card says where the spec came from


def test_the_cards_snippet_runs_without_a_custom_code_prompt(shipped):
    card = (shipped / "README.md").read_text()
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0].replace("PATH", repr(str(shipped)))
    assert "trust_remote_code=True" in snippet.split("AutoTokenizer.from_pretrained", 1)[1]
    proc = subprocess.run([sys.executable, "-c", 'import sys; sys.modules["exprsearch"] = None\n' + snippet
                           + "\nprint('LOADED', type(tokenizer).__name__)"], capture_output=True, text=True, cwd="/",
                          stdin=subprocess.DEVNULL, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and "LOADED" in proc.stdout, proc.stderr[-2000:]
    assert "Do you wish to run the custom code" not in proc.stdout + proc.stderr
