"""Checks before work (issue 31, items 6 and 7): every option of every command is refused in a
second, before a store is created, data is read or anything trains; task names never become
paths; the model card shows names as text."""
from __future__ import annotations

from pathlib import Path

import pytest
from _support import STANDARD_FFN
from conftest_kd import easy_glue, kd_cache, tiny_teacher  # noqa: F401

from exprsearch.cli import checks
from exprsearch.cli.main import main
from exprsearch.errors import ConfigError
from exprsearch.ship.card import model_card


@pytest.fixture
def no_training(monkeypatch):
    """Any Evaluator (teacher fine-tune, warm-up, training) fails the test."""
    import exprsearch.kd.evaluate as evaluate

    def trained(*a, **k):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(evaluate.Evaluator, "__init__", trained)


def common(glue: Path, teacher: Path, cache: Path) -> list[str]:
    return ["--data-dir", str(glue), "--teacher", str(teacher), "--cache-dir", str(cache), "--device", "cpu"]


def refused(capsys, argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "internal error" not in err, err


DISTILL_BAD = [(["--seeds", "0"], "seeds must be a whole number >= 1"),
               (["--seeds", "1000000000"], "seeds must be a whole number >= 1 and <= 1000"),
               (["--final-dropout", "1.5"], "dropout must be a finite number >= 0 and < 1"),
               (["--epochs", "inf"], "epochs must be a finite number > 0"),
               (["--task-epochs", "SST-2=nan"], "task_epochs: 'SST-2=nan' needs a number > 0"),
               (["--eval-every", "0"], "eval_every"),
               (["--task-steps", "SST-2=nan"], "task_steps: 'SST-2=nan' needs a whole number"),
               (["--teacher-epochs", "1e300"], "teacher_epochs must be at most 1,000")]


@pytest.mark.parametrize("more, message", DISTILL_BAD, ids=[" ".join(m) for m, _ in DISTILL_BAD])
def test_distill_refuses_bad_options_before_training(capsys, tmp_path, no_training, easy_glue, tiny_teacher,  # noqa: F811
                                                      kd_cache, more, message):  # noqa: F811
    out = tmp_path / "student"
    refused(capsys, ["distill", STANDARD_FFN, "--task", "SST-2", "-o", str(out), *common(easy_glue, tiny_teacher,
                                                                                          kd_cache), *more], message)
    assert list(tmp_path.iterdir()) == []


def test_distill_refuses_an_existing_or_unnamable_output_before_training(capsys, tmp_path, no_training, easy_glue,  # noqa: F811
                                                                        tiny_teacher, kd_cache):  # noqa: F811
    args = ["distill", STANDARD_FFN, "--task", "SST-2", *common(easy_glue, tiny_teacher, kd_cache)]
    (tmp_path / "there").mkdir()
    refused(capsys, [*args, "-o", str(tmp_path / "there")], "exists: choose another -o, or pass --overwrite")
    refused(capsys, [*args, "-o", str(tmp_path / ("a" * 300))], "the name is too long")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there"]  # no lock left behind


EVAL_BAD = [(["--task-steps", "SST-2=nan"], "task_steps"), (["--steps", str(10**20)], "steps must be at most"),
            (["--teacher-epochs", "1e300"], "teacher_epochs must be at most"),
            (["--task-steps", "SST-2=1.5"], "needs a whole number"), (["--batch-size", "10000000"], "batch_size"),
            (["--task", "../../../X"], "task name '../../../X'"), (["--task", "b" * 300], "task name 'bbb"),
            (["--task", "<script>"], "task name '<script>'")]


@pytest.mark.parametrize("more, message", EVAL_BAD, ids=[m[0] for m, _ in EVAL_BAD])
def test_eval_refuses_bad_options_before_training(capsys, no_training, easy_glue, tiny_teacher, kd_cache,  # noqa: F811
                                                   more, message):
    base = ["eval", STANDARD_FFN, *common(easy_glue, tiny_teacher, kd_cache)]
    refused(capsys, base + (more if more[0] == "--task" else ["--task", "SST-2", *more]), message)


def test_a_task_name_is_never_a_path_for_your_own_data(capsys, tmp_path, no_training, tiny_teacher, kd_cache):  # noqa: F811
    rows = "text,label\n" + "".join(f"good {i},1\nbad {i},0\n" for i in range(10))
    (tmp_path / "t.csv").write_text(rows)
    (tmp_path / "d.csv").write_text(rows)
    for cmd in ("teacher", "eval"):
        argv = [cmd, *([STANDARD_FFN] if cmd == "eval" else []), "--task", "../../../X", "--train",
                str(tmp_path / "t.csv"), "--dev", str(tmp_path / "d.csv"), "--text-columns", "text", "--label-column",
                "label", "--teacher", str(tiny_teacher), "--cache-dir", str(kd_cache), "--device", "cpu"]
        refused(capsys, argv, "task name '../../../X'")
    assert not (tmp_path.parent.parent.parent / "X").exists()


SEARCH_BAD = [(["--budget-params", "nan"], "budget-params 'nan'"), (["--budget-params", "inf"], "budget-params"),
              (["--budget-flops=-1M"], "budget-flops '-1M'"), (["--budget-flops", "nan"], "budget-flops"),
              (["--budget-flops", "inf"], "budget-flops"), (["--gpus-per-worker", "nan"], "gpus_per_worker"),
              (["--gpus-per-worker", "-1"], "gpus_per_worker"), (["--stages", ""], "stages ''"),
              (["--candidates", "10000000"], "candidates must be at most"), (["--max-depth", "1000"], "max_depth"),
              (["--top", "0"], "top must be"), (["--supernet-steps", str(10**12)], "supernet_steps")]


@pytest.mark.parametrize("more, message", SEARCH_BAD, ids=[" ".join(m) for m, _ in SEARCH_BAD])
def test_search_refuses_bad_options_before_the_store_exists(capsys, tmp_path, no_training, easy_glue, tiny_teacher,  # noqa: F811
                                                             kd_cache, more, message):  # noqa: F811
    store = tmp_path / "runs.db"
    refused(capsys, ["search", "--task", "SST-2", "--store", str(store), *common(easy_glue, tiny_teacher, kd_cache),
                     *more], message)
    assert not store.exists()


@pytest.mark.parametrize("argv, message", [(["show", "--top", "-3"], "top must be"),
                                            (["report", "--top", "0"], "top must be"),
                                            (["space", "--max-depth", "1000"], "max_depth must be at most 32"),
                                            (["space", "--samples", "-1"], "samples"),
                                            (["canon", "--base-ratio", "nan", "x"], "base_ratio"),
                                            (["compile", STANDARD_FFN, "--hidden", "0"], "hidden"),
                                            (["compile", STANDARD_FFN, "--batch", "10000000"], "batch")])
def test_the_other_commands_check_their_options(capsys, tmp_path, argv, message):
    refused(capsys, [*argv, *(["--store", str(tmp_path / "none.db")] if argv[0] in ("show", "report") else [])],
            message)


def test_exits_refuses_bad_options_before_training(capsys, no_training, easy_glue, tiny_teacher, kd_cache):  # noqa: F811
    refused(capsys, ["exits", STANDARD_FFN, "--task", "SST-2", *common(easy_glue, tiny_teacher, kd_cache),
                     "--exit-steps", str(10**9)], "exit_steps must be at most")


def test_per_task_values_and_stored_configs():
    checks.check_per_task("task_steps", "RTE=150, SST-2=2000", whole=True, most=10**7)
    for bad in ("RTE", "RTE=", "=5", "RTE=-1", "RTE=inf", "RTE=1e300"):
        with pytest.raises(ConfigError):
            checks.check_per_task("task_steps", bad, whole=True, most=10**7)
    from exprsearch.kd.protocol import EvalConfig
    checks.check_stored(EvalConfig, {"tasks": ["RTE"], "steps": 5, "dropout": None}, "run r")
    with pytest.raises(ConfigError, match="EvalConfig.steps is 'many'"):
        checks.check_stored(EvalConfig, {"steps": "many"}, "run r")


def test_the_model_card_shows_names_as_text():
    info = {"task": "<script>alert(1)</script>", "spec": "[x]", "main_metric": "acc", "chosen_seed": 0,
            "source": "run *r* of <b>x.db</b>",
            "student": {"mean": 80.0, "std": 0.0, "seeds": [{"seed": 0, "status": "ok", "dev": {"acc": 0.8},
                                                             "heldout": 0.81, "best_step": 5, "steps": 6}]},
            "standard": None, "teacher": {"acc": 90.0}, "params": 10, "nonembed_params": 4, "ffn_params": 2,
            "flops_per_token": 1e6, "latency": {}, "command": "exprsearch distill '```x' -o d", "protocol": {}}
    card = model_card(info)
    assert "<script>" not in card and "<b>" not in card and "&lt;script&gt;" in card
    assert "run \\*r\\* of &lt;b&gt;x.db&lt;/b&gt;" in card and "| this student | 80.00 ± 0.00 (1 seed) |" in card
    assert "````\nexprsearch distill '```x' -o d\n````" in card  # a fence the command cannot close


def test_overwrite_replaces_only_a_student_exprsearch_wrote(tmp_path):
    """Issue 33 item 3: ``--overwrite`` on a folder of the user's (a ``mine.txt`` in it) is refused
    before any training and the folder is left as it was; a directory distill wrote is replaced."""
    import json

    from exprsearch.errors import ConfigError
    from exprsearch.ship.outdir import reserve
    mine = tmp_path / "out"
    mine.mkdir()
    (mine / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a student exprsearch wrote"):
        reserve(mine, ["SST-2"], overwrite=True)
    assert (mine / "mine.txt").read_text() == "keep me"
    (mine / "mine.txt").unlink()
    (mine / "config.json").write_text(json.dumps({"model_type": "exprbert"}))
    with reserve(mine, ["SST-2"], overwrite=True):
        pass
