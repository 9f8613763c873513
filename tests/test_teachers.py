"""Teachers users have (issue 30 item 4): BERT, RoBERTa, XLM-RoBERTa, ELECTRA and DistilBERT
teachers -- tiny, random, local -- carried into a BERT twin exactly, and each run through
teacher -> search -> distill -> loading the shipped student where exprsearch cannot be imported."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest_kd import easy_glue, kd_cache, one_thread, quiet  # noqa: F401
from conftest_ship import load_without_exprsearch
from conftest_teachers import FAMILIES, make_teacher

from exprsearch.cli.main import main
from exprsearch.compiler.teachers import bert_twin, family, teacher_shape
from exprsearch.errors import ConfigError
from exprsearch.kd.teacher import load_teacher, load_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teachers(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("teachers")
    return {k: make_teacher(root / k, k) for k in FAMILIES}


@pytest.mark.parametrize("kind", FAMILIES)
def test_the_bert_twin_computes_what_the_teacher_computes(teachers, kind):
    t = load_teacher(teachers[kind], 2).eval()
    tok = load_tokenizer(teachers[kind])
    enc = tok(["the good movie", "a bad plot and the music was so"], padding=True, return_tensors="pt")
    twin = bert_twin(t)
    assert (twin is t) == (kind == "bert") and type(twin).__name__ == "BertForSequenceClassification"
    inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        theirs = t(**inputs, output_hidden_states=True).hidden_states
        mine = twin(**inputs, output_hidden_states=True).hidden_states
    keep = enc["attention_mask"].bool()
    assert len(theirs) == len(mine) == 3
    for a, b in zip(theirs, mine):  # every layer, every real token (RoBERTa's positions re-based)
        assert torch.allclose(a[keep], b[keep], atol=1e-5)
    shape = teacher_shape(t.config.to_dict())
    assert shape["hidden_size"] == 32 and shape["num_hidden_layers"] == 2
    assert shape["type_vocab_size"] == (2 if kind in ("bert", "electra") else 1)
    assert shape["max_position_embeddings"] == 128  # RoBERTa: 130 rows, 2 before position 0


@pytest.mark.parametrize("config, match", [
    ({"model_type": "deberta-v2"}, "disentangled"),
    ({"model_type": "gpt2"}, "bert, distilbert, electra, roberta"),
    ({"model_type": "electra", "embedding_size": 128, "hidden_size": 256}, "projects its embeddings")])
def test_teachers_that_cannot_be_carried_are_refused_by_name(config, match):
    with pytest.raises(ConfigError, match=match):
        family(config)


def test_an_unsupported_teacher_directory_is_one_message(tmp_path):
    from exprsearch.kd.teacher import check_teacher_dir
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "deberta-v2",
                                                      "architectures": ["DebertaV2ForSequenceClassification"]}))
    with pytest.raises(ConfigError, match=r"DebertaV2ForSequenceClassification.*not supported"):
        check_teacher_dir(tmp_path)


@pytest.mark.parametrize("kind", FAMILIES)
def test_teacher_search_distill_and_load_without_exprsearch(tmp_path, easy_glue, teachers, kind):
    common = ["--task", "SST-2", "--data-dir", str(easy_glue), "--teacher", str(teachers[kind]),
              "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--layers", "2", "--max-len", "32",
              "--batch-size", "16", "--max-train", "64", "--max-dev", "32", "--warmup-steps", "4",
              "--teacher-epochs", "0.5", "--lr", "1e-3", "--steps", "4", "--heldout-rows", "20"]
    store = tmp_path / "runs.db"
    assert main(["search", *common, "--stages", "1", "--candidates", "2", "--population", "2", "--tournament", "2",
                 "--store", str(store), "--json"]) == 0
    out = tmp_path / "student"
    assert main(["distill", "last", "--store", str(store), *common, "-o", str(out), "--min-steps", "4",
                 "--eval-every", "2", "--json"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "exprbert" and cfg["type_vocab_size"] == (2 if kind in ("bert", "electra") else 1)
    got = load_without_exprsearch(out, tmp_path / "hf_home", ["a good movie", "the plot was bad"])
    assert len(got["logits"]) == 2 and all(len(row) == 2 for row in got["logits"])
    assert ("token_type_ids" in got["keys"]) == (kind in ("bert", "electra"))  # the teacher's own tokenizer
    from exprsearch.compiler import load_student
    mine = load_student(out).eval()
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    enc = tok(["a good movie", "the plot was bad"], padding=True, return_tensors="pt")
    with torch.no_grad():
        want = mine(**enc).logits
    assert torch.allclose(torch.tensor(got["logits"]), want, atol=1e-5)
