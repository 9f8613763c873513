"""A model card that says when a model learned nothing (issue 33 item 1): the card and the distill
log state how many rows trained, chose and scored the model (of how many, where a preset's limit cut
them), compare the student and the teacher with the best constant predictor on the same dev rows
-- one class, or for regression the training mean, with Spearman and RMSE beside Pearson -- and say
plainly, first thing in the card, when either is not better."""
from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
from conftest_kd import easy_glue, kd_cache, one_thread, tiny_teacher  # noqa: F401

from exprsearch.cli.main import main
from exprsearch.rows.glue import task
from exprsearch.ship.trivial import constant_predictor, judge, warnings

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"
_WORDS = ["the", "movie", "was", "really", "a", "plot", "actor", "story", "very", "film", "good", "bad"]


def _small(teacher, cache, *more):
    return ["--teacher", str(teacher), "--cache-dir", str(cache), "--device", "cpu", "--layers", "2", "--max-len", "32",
            "--batch-size", "16", "--warmup-steps", "5", "--teacher-epochs", "0.5", "--lr", "1e-3", "--epochs", "1",
            "--eval-every", "2", "--heldout-rows", "20", "--min-steps", "4", *more]


def _noise(path: Path, n: int, seed: int) -> Path:
    """Labels drawn independently of the text: nothing to learn."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for _ in range(n):
            w.writerow([" ".join(rng.sample(_WORDS, 5)), rng.choice(["yes", "no"])])
    return path


def test_a_model_that_learned_nothing_is_said_first(tmp_path, tiny_teacher, capsys):  # noqa: F811
    train, dev = _noise(tmp_path / "noise_train.csv", 200, 0), _noise(tmp_path / "noise_dev.csv", 60, 1)
    out = tmp_path / "student"
    rc = main(["distill", SPEC, "--train", str(train), "--dev", str(dev), "--text-columns", "text", "--label-column",
               "label", "-o", str(out), *_small(tiny_teacher, tmp_path / "cache", "--max-train", "100")])
    err = capsys.readouterr().err
    assert rc == 0, err
    card = (out / "README.md").read_text()
    assert "\n# ExprBert student for noise\n" in card  # the file's stem without its split word
    top = card.split("## Use")[0]
    assert "**Warning: the student is not better than always predicting '" in top
    assert "the teacher is not better than always predicting '" in top
    section = card.split("## Data, and better than guessing?")[1].split("## Size and speed")[0]
    assert "**Trained on only 100 of 180 training rows** (max_train cut the rest" in section  # 200 - 20 held out
    assert "20 other training rows, never trained on, chose the checkpoint and the seed" in section
    assert "scored on 60 dev rows." in section and "noise\\_train.csv (training), noise\\_dev.csv (dev)" in section
    assert "| predictor | acc | predicts |" in section and "(the best constant on these rows) |" in section
    assert "**Warning: the student is not better than" in section
    # the log says it too: the cut and the warnings
    assert "100 of 180 training rows (cut by max_train 100: --max-train none keeps them all)" in err
    assert "warning: the student is not better than always predicting" in err
    assert "warning: the teacher is not better than always predicting" in err


def test_a_regression_card_has_spearman_rmse_and_the_mean(tmp_path, easy_glue, tiny_teacher, capsys):  # noqa: F811
    out = tmp_path / "sts"
    rc = main(["distill", SPEC, "--task", "STS-B", "--data-dir", str(easy_glue), "-o", str(out),
               *_small(tiny_teacher, tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 0, err
    card = (out / "README.md").read_text()
    section = card.split("## Data, and better than guessing?")[1].split("## Size and speed")[0]
    assert "| predictor | pearson | spearman | RMSE | predicts |" in section
    assert "(the training labels' mean) | 0.00 | 0.00 |" in section
    student = next(line for line in section.splitlines() if line.startswith("| this student"))
    assert len(student.split(" | ")) == 5  # name, pearson, spearman, RMSE, what it predicts
    assert "(the labels: 0.00 to 5.00)" in student
    assert "(held-out " in err and "(held-out 0." not in err  # the held-out score in points, not a raw fraction


def test_the_constant_predictor_is_the_best_one_on_the_rows():
    mrpc = task("MRPC")  # F1: always 'equivalent' scores 2p / (1 + p), not 0
    const = constant_predictor(mrpc, [0, 1], [1, 1, 1, 0])
    assert const["value"] == "1" and const["metrics"]["f1"] == pytest.approx(2 * 0.75 / 1.75)
    cola = constant_predictor(task("CoLA"), [0, 1, 1], [0, 1, 1, 1])
    assert cola["metrics"]["mcc"] == 0.0
    sts = constant_predictor(task("STS-B"), [1.0, 3.0], [0.0, 4.0])
    assert sts["value"] == 2.0 and sts["rmse"] == pytest.approx(2.0) and sts["metrics"]["pearson"] == 0.0


def test_a_model_that_learned_is_not_warned_about():
    t = task("SST-2")
    labels = [0, 1] * 100
    const = constant_predictor(t, labels, labels)
    good = judge(t, labels, [0, 1] * 90 + [1, 0] * 10)  # 90 %
    assert warnings(t, const, good, good) == []
    weak = judge(t, labels, [0, 1] * 52 + [1, 0] * 48)  # 52 %, within noise of 50 %
    assert [w.split(" (")[0] for w in warnings(t, const, weak, good)] == \
        ["the student is not better than always predicting '0'"]
    both = warnings(t, const, weak, weak)  # the teacher's remedy names --max-train none only where it cut rows
    assert "--max-train none" not in both[1] and "--teacher-epochs" in both[1]
    assert "--max-train none" in warnings(t, const, weak, weak, cut=True)[1]
    sts = task("STS-B")
    y = [float(i % 5) for i in range(100)]
    flat = judge(sts, y, [0.2 + 0.01 * (i % 5) for i in range(100)])  # correlated, but on the wrong scale
    found = warnings(sts, constant_predictor(sts, y, y), flat, None)
    assert len(found) == 1 and found[0].startswith("the student's values are further from the labels than the "
                                                   "training mean's")


def _info(task: str, **kw):
    return {"task": task, "spec": "[x]", "main_metric": "mcc" if task == "CoLA" else "acc", "chosen_seed": 10000,
            "student": {"mean": 31.25, "std": 1.5, "seeds": [{"seed": s, "status": "ok", "dev": {"acc": 0.8},
                                                              "heldout": 0.81, "best_step": 5, "steps": 6}
                                                             for s in (10000, 10001)]},
            "standard": None, "teacher": {"acc": 90.0, "mcc": 40.0}, "params": 10, "nonembed_params": 4,
            "ffn_params": 2, "flops_per_token": 1e6, "latency": {}, "command": "exprsearch distill x", "protocol": {},
            **kw}


def test_the_card_metadata_is_yaml_the_hub_reads():
    """Issue 30 item 3: library_name, pipeline_tag, tags, base_model = the teacher, datasets and the
    dev score as a model-index, parsed back with a YAML parser."""
    import yaml

    from exprsearch.ship.card import model_card
    meta = yaml.safe_load(model_card(_info("CoLA", base_model="sentence-transformers/all-MiniLM-L6-v2")).split("---")[1])
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert "exprsearch" in meta["tags"] and meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["datasets"] == ["glue"] and meta["metrics"] == ["matthews_correlation"]
    (result,) = meta["model-index"][0]["results"]
    assert result["dataset"] == {"name": "GLUE CoLA", "type": "glue", "config": "cola", "split": "validation"}
    assert result["metrics"][0]["value"] == 31.25 and "mean of 2 seeds (std 1.50)" in result["metrics"][0]["name"]
    mine = yaml.safe_load(model_card(_info("my:task #1")).split("---")[1])  # a user's task: quoted, no GLUE
    assert "datasets" not in mine and "base_model" not in mine
    assert mine["model-index"][0]["results"][0]["dataset"]["name"] == "my-task--1"
