"""``exprsearch eval`` and ``exprsearch teacher`` run in-process on the tiny teacher and easy data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest_kd import (  # noqa: F401
    OTHER_SPEC,
    easy_glue,
    easy_teacher,
    kd_cache,
    one_thread,
    tiny_teacher,
    write_sst2,
)

import exprsearch.kd.teacher as teacher_mod
from exprsearch.cli import main as cli
from exprsearch.lang.standard import STANDARD_FFN
from exprsearch.lang.canon import canonicalize_spec
from exprsearch.lang.parsing import parse_spec

STANDARD_SPEC = str(STANDARD_FFN)  # the standard FFN's text

pytestmark = pytest.mark.usefixtures("one_thread")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse rejects an option
        rc = exit_.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def _canonical(text: str) -> str:
    return str(canonicalize_spec(parse_spec(text).broadcast(2)))


@pytest.fixture(scope="module")
def common(easy_glue, easy_teacher, kd_cache) -> list[str]:
    return ["--task", "SST-2", "--data-dir", easy_glue, "--teacher", easy_teacher, "--layers", "2",
            "--steps", "5", "--warmup-steps", "5", "--teacher-epochs", "0.5", "--max-len", "32",
            "--batch-size", "16", "--cache-dir", kd_cache, "--seed", "0"]


def test_eval_json(capsys, common, kd_cache):
    rc, out, err = run(capsys, "eval", OTHER_SPEC, *common, "--json")
    assert rc == 0, err
    info = json.loads(out)
    (r,) = info["results"]
    assert r["status"] == "ok" and r["reason"] == ""
    assert r["spec"] == _canonical(OTHER_SPEC)
    assert set(r["metrics"]) == {"SST-2"} and 0.0 <= r["metrics"]["SST-2"]["acc"] <= 1.0
    assert r["score"] == pytest.approx(100 * r["metrics"]["SST-2"]["acc"])
    assert r["params"] > 0 and r["flops_per_token"] > 0
    assert [s for s, _ in r["curves"]["SST-2"]["loss"]] == [1, 2, 3, 4, 5]
    cfg = info["config"]
    assert (cfg["layers"], cfg["steps"], cfg["warmup_steps"], cfg["max_len"], cfg["tasks"]) == (2, 5, 5, 32,
                                                                                                  ["SST-2"])
    assert cfg["cache_dir"] == str(kd_cache) and cfg["teacher_epochs"] == 0.5
    assert set(info["teacher"]["SST-2"]) == {"acc"}


def test_eval_baseline_adds_the_standard_ffn(capsys, common):
    rc, out, err = run(capsys, "eval", OTHER_SPEC, *common, "--baseline", "--json")
    assert rc == 0, err
    results = json.loads(out)["results"]
    assert [r["spec"] for r in results] == [_canonical(OTHER_SPEC), _canonical(STANDARD_SPEC)]
    assert all(r["status"] == "ok" and "acc" in r["metrics"]["SST-2"] for r in results)
    assert results[0]["params"] < results[1]["params"]  # half-width FFNs vs the standard FFN


def test_eval_human_output_and_spec_file(capsys, common, tmp_path):
    spec_file = tmp_path / "model.ffn"
    spec_file.write_text(f"# one expression per layer\n{OTHER_SPEC}\n{STANDARD_SPEC}\n", encoding="utf-8")
    rc, out, err = run(capsys, "eval", spec_file, *common)
    assert rc == 0, err
    spec = f"[{OTHER_SPEC}; {STANDARD_SPEC}]"  # the per-layer spec read from the file (long: cut to 70)
    assert len(spec) > 70 and spec[:67] + "..." in out
    assert "ok" in out and "SST-2: acc " in out and "teacher dev: SST-2: acc " in out


def test_teacher_command_reports_the_cache_path(capsys, tiny_teacher, easy_glue, tmp_path, monkeypatch):
    argv = ["teacher", "--task", "SST-2", "--data-dir", easy_glue, "--teacher", tiny_teacher, "--teacher-epochs",
            "0.2", "--max-len", "32", "--cache-dir", tmp_path, "--json"]
    torch.manual_seed(0)  # the teacher's new head comes from the global RNG
    rc, out, err = run(capsys, *argv)
    assert rc == 0, err
    info = json.loads(out)["SST-2"]
    path = Path(info["path"])
    assert path.parent == tmp_path / "teachers" and (path / "exprsearch.json").is_file()
    assert (path / "config.json").is_file()
    assert info["task"] == "SST-2" and set(info["dev"]) == {"acc"} and info["config"]["epochs"] == 0.2
    assert "fine-tuning teacher on SST-2" in err

    def no_training(*a, **k):
        raise AssertionError("trained although the teacher is cached")

    monkeypatch.setattr(teacher_mod, "GroupTrainer", no_training)
    rc, out, err = run(capsys, *argv[:-1])  # human output, from the cache
    assert rc == 0 and str(path) in out and "cached at" in out
    assert "fine-tuning" not in err


def test_teacher_command_needs_a_task(capsys, tmp_path):
    rc, out, err = run(capsys, "teacher", "--cache-dir", tmp_path)
    assert rc == 2 and err.startswith("error: name the task(s)")


def test_teacher_command_honours_teacher_batch_bug(capsys, tiny_teacher, easy_glue, tmp_path):
    rc, out, err = run(capsys, "teacher", "--task", "SST-2", "--data-dir", easy_glue, "--teacher", tiny_teacher,
                       "--teacher-epochs", "0.2", "--teacher-batch", "16", "--max-len", "32", "--cache-dir",
                       tmp_path, "--json")
    assert rc == 0, err
    assert json.loads(out)["SST-2"]["config"]["batch_size"] == 16


def test_bad_task_is_one_error_line_with_a_suggestion(capsys, common):
    argv = list(common)
    argv[argv.index("SST-2")] = "SST3"
    rc, out, err = run(capsys, "eval", OTHER_SPEC, *argv)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: unknown GLUE task 'SST3'") and "did you mean 'SST-2'?" in err


def _malformed(root: Path) -> Path:
    write_sst2(root, n_train=40, n_dev=20)
    train = root / "SST-2" / "train.tsv"
    lines = train.read_text(encoding="utf-8").split("\n")
    lines[3] = "a sentence with a bad label\t7"  # line 4 of the file
    train.write_text("\n".join(lines), encoding="utf-8")
    return train


def test_malformed_data_exits_2_naming_file_and_line(capsys, tiny_teacher, tmp_path):
    train = _malformed(tmp_path / "glue")
    rc, out, err = run(capsys, "eval", OTHER_SPEC, "--task", "SST-2", "--data-dir", tmp_path / "glue",
                       "--teacher", tiny_teacher, "--layers", "2", "--cache-dir", tmp_path / "cache")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert f"{train}:4:" in err and "'7'" in err


def test_skip_bad_rows_option_exists_bug(capsys, tiny_teacher, tmp_path):
    _malformed(tmp_path / "glue")
    rc, out, err = run(capsys, "teacher", "--task", "SST-2", "--data-dir", tmp_path / "glue", "--teacher",
                       tiny_teacher, "--teacher-epochs", "0.2", "--max-len", "32", "--cache-dir", tmp_path / "cache",
                       "--skip-bad-rows")
    assert rc == 0, err


def test_teacher_command_with_a_preset_takes_task_from_task_option_bug(capsys, tiny_teacher, easy_glue, tmp_path):
    """--task wins over the preset's tasks (was: an internal TypeError, 'tasks' given twice)."""
    rc, out, err = run(capsys, "teacher", "--preset", "quick", "--task", "SST-2", "--data-dir", easy_glue,
                       "--teacher", tiny_teacher, "--teacher-epochs", "0.2", "--max-len", "32", "--cache-dir",
                       tmp_path, "--json")
    assert rc == 0, err
    config = json.loads(out)["SST-2"]["config"]
    assert config["batch_size"] == 16 and config["epochs"] == 0.2  # the preset's batch, the option's epochs


BAD_OPTIONS = [  # issue 23: each was an internal error, a NaN loss, or accepted silently
    (["eval", "--batch-size", "0"], "batch_size must be a whole number >= 1, got 0"),
    (["eval", "--lr", "nan"], "lr must be a finite number > 0, got nan"),
    (["eval", "--max-len", "0"], "max_len must be a whole number >= 2 and <= 512, got 0"),
    (["eval", "--steps", "0"], "steps must be a whole number >= 1, got 0"),
    (["eval", "--steps", "-1"], "steps must be a whole number >= 1, got -1"),
    (["eval", "--max-train", "0"], "max_train must be a whole number >= 1, got 0"),
    (["teacher", "--teacher-epochs", "-1"], "teacher_epochs must be a finite number > 0, got -1.0"),
    (["eval", "--group", "-1"], "group must be a whole number >= 0, got -1"),
    (["eval", "--temperature", "0"], "temperature must be a finite number > 0, got 0.0"),
    (["eval", "--device", "gpu"], "device 'gpu': choose auto, cpu, cuda or cuda:N"),
    (["exits", "--exit-steps", "0"], "exit_steps must be a whole number >= 1, got 0"),
    (["exits", "--threshold", "nan"], "threshold must be a finite number >= 0, got nan"),
    (["search", "--tournament", "99"], "tournament 99 is larger than the population 16"),
    (["search", "--attn-choices", "mha(heads=999)"], "attention choice 'mha(heads=999)': heads=999 is too large"),
    (["search", "--attn-choices", "std|mha(heads=13)"], "attention choice mha(heads=13): the teacher has 12 heads"),
    (["search", "--depths", "3,9"], "depths 3,9: a student has at most --layers 6"),
    (["search", "--workers", "-1"], "workers must be at least 1 (or 0: sized to the device)"),
]


@pytest.mark.parametrize("argv, message", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_option_values_are_one_message_at_parse_time(capsys, tmp_path, argv, message):
    """One ``error:`` line, exit 2, before any data, teacher or store is touched."""
    where = {"eval": [STANDARD_SPEC, "--task", "SST-2"], "exits": [STANDARD_SPEC, "--task", "SST-2"],
             "teacher": ["--task", "SST-2"], "search": ["--store", tmp_path / "runs.db"]}[argv[0]]
    rc, out, err = run(capsys, argv[0], *where, *argv[1:], "--data-dir", tmp_path / "no-data")
    assert rc == 2 and out == "" and err.startswith(f"error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "runs.db").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_a_config_error(capsys, tmp_path):
    from exprsearch.errors import ConfigError
    from exprsearch.kd.protocol import EvalConfig
    cfg = EvalConfig(device="cuda")  # a stored GPU run's config still reads on a CPU machine
    with pytest.raises(ConfigError, match="CUDA is not available in this torch build|no CUDA device"):
        cfg.torch_device()
    rc, out, err = run(capsys, "eval", STANDARD_SPEC, "--task", "SST-2", "--device", "cuda", "--data-dir", tmp_path)
    assert rc == 2 and err.startswith("error: device cuda: ") and err.count("\n") == 1


def test_zero_means_sized_to_the_device_for_group_and_workers():
    from exprsearch.kd.protocol import EvalConfig
    from exprsearch.search.search import SearchConfig
    assert EvalConfig(group=0).group == 0 and SearchConfig(workers=0).workers == 0
