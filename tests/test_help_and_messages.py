"""What a user reads before anything trains (issue 33 items 4 and 7): every option's help names its
default once, a field named ``no_x`` is ``--no-x`` / ``--x`` (never ``--no-no-x``), a missing
``--dev`` is called ``--dev``, a CSV row with an extra field is refused with ``file:line``, a JSONL
error says "at" once, a training file's split word is not the task's name, and transformers'
progress bars stay out of the logs."""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import pytest

from exprsearch.cli import main as cli
from exprsearch.cli.main import build_parser
from exprsearch.rows.glue import DataError
from exprsearch.rows.userdata import UserData, read_user_split, user_task


def _commands() -> dict[str, argparse.ArgumentParser]:
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_option_with_a_value_names_its_default_once():
    missing, twice = [], []
    for name, sp in _commands().items():
        for a in sp._actions:
            if not a.option_strings or a.nargs == 0 or a.required or isinstance(a, argparse._HelpAction):
                continue
            text = (a.help or "").lower()
            if "default" not in text:
                missing.append(f"{name} {a.option_strings[0]}")
            if text.count("default:") > 1 or "(default: none) (default" in text:
                twice.append(f"{name} {a.option_strings[0]}: {a.help}")
    assert not missing, missing
    assert not twice, twice
    seeds = next(a for a in _commands()["distill"]._actions if "--seeds" in a.option_strings)
    assert "(default: 1)" in seeds.help


def test_a_no_field_is_no_x_and_x_never_no_no_x(capsys):
    helps = {name: sp.format_help() for name, sp in _commands().items()}
    assert all("--no-no-" not in h for h in helps.values())
    ns = build_parser(["eval"]).parse_args(["eval", "x", "--no-kd"])
    assert ns.no_kd is True
    assert build_parser(["eval"]).parse_args(["eval", "x", "--kd"]).no_kd is False
    assert not hasattr(build_parser(["eval"]).parse_args(["eval", "x"]), "no_kd")  # the config's default


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_a_csv_row_with_an_extra_field_is_refused_with_its_line(tmp_path, capsys):
    rows = [["a good film", "pos"], ["a bad film", "neg"]] * 3
    good = _csv(tmp_path / "train.csv", ["review", "stars"], rows)
    extra = tmp_path / "extra.csv"
    extra.write_text("review,stars\na good film,pos\na bad, sad film,neg\n", encoding="utf-8")  # unquoted comma
    t = user_task(UserData("x", str(good), str(extra), ("review",), "stars"))
    with pytest.raises(DataError) as err:
        read_user_split(t, "dev")
    assert str(err.value).startswith(f"{extra}:3: has 3 fields, the header has 2 (a value holding a comma needs "
                                     f"double quotes)")
    short = tmp_path / "short.tsv"
    short.write_text("id\treview\tstars\n1\tgood\tpos\n2\tbad\n", encoding="utf-8")
    t2 = user_task(UserData("y", str(good), str(short), ("review",), "stars"))
    with pytest.raises(DataError, match=r"short.tsv:3: has 2 fields, the header has 3"):
        read_user_split(t2, "dev")
    skipped = read_user_split(t, "dev", skip_bad_rows=True)  # --skip-bad-rows counts it
    assert len(skipped) == 1 and skipped.skipped == 1
    rc = cli.main(["eval", "linear1_1(gelu(linear1_1(x,wb1)),wb2)", "--train", str(good), "--dev", str(extra),
                   "--text-columns", "review", "--label-column", "stars", "--device", "cpu",
                   "--cache-dir", str(tmp_path / "cache")])
    err_text = capsys.readouterr().err
    assert rc == 2 and err_text.startswith(f"error: {extra}:3: has 3 fields") and err_text.count("\n") == 1


def test_a_jsonl_error_says_at_once(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "score": 1}\n{"text": "tab\there", "score": 2}\n', encoding="utf-8")
    with pytest.raises(DataError) as err:
        user_task(UserData("t", str(path), str(path), ("text",), "score", regression=True))
    text = str(err.value)
    assert text.startswith(f"{path}:2: not a JSON object (Invalid control character at column ") and "at at" not in text


def test_a_missing_dev_file_is_called_dev(tmp_path, capsys):
    good = _csv(tmp_path / "train.csv", ["review", "stars"], [["a good film", "pos"], ["a bad film", "neg"]])
    rc = cli.main(["eval", "x", "--train", str(good), "--text-columns", "review", "--label-column", "stars"])
    err = capsys.readouterr().err
    assert rc == 2 and err.rstrip().endswith(": --dev missing") and "--dev-file" not in err


def test_the_task_is_named_after_the_file_without_its_split_word(tmp_path):
    from exprsearch.cli.common import task_options
    ns = argparse.Namespace(train_file=str(tmp_path / "qnli_train.jsonl"), dev_file=str(tmp_path / "qnli_dev.jsonl"))
    assert task_options(ns, None)["tasks"] == ("qnli",)
    assert task_options(ns, "mine")["tasks"] == ("mine",)  # --task wins


def test_transformers_progress_bars_stay_out_of_the_log(tmp_path, capfd):
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    from exprsearch.kd.teacher import load_teacher
    hf_logging.enable_progress_bar()  # as in a fresh process
    BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=32)).save_pretrained(tmp_path / "t")
    capfd.readouterr()
    load_teacher(tmp_path / "t")
    BertForSequenceClassification.from_pretrained(tmp_path / "t").save_pretrained(tmp_path / "again")
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err
    assert (tmp_path / "again" / "config.json").is_file()
