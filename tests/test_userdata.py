"""Your own data wherever a task is named (issue 25 item 2): ``--train FILE --dev FILE --text-columns
COL --label-column COL [--regression]`` in CSV, TSV, JSONL or a ``datasets`` folder, through eval,
teacher, search (two worker processes), distill; the caches key on the data; bad files are one
line naming ``file:line`` and the column, and nothing is stored."""
from __future__ import annotations

import csv
import json
import pickle
import random
import sys
from pathlib import Path

import pytest
from conftest_kd import kd_cache, one_thread, tiny_teacher  # noqa: F401

import exprsearch.rows.userdata as userdata
from exprsearch.cli import main as cli
from exprsearch.errors import ConfigError
from exprsearch.rows.glue import DataError, task
from exprsearch.kd.protocol import NEUTRAL, USER_FIELDS, EvalConfig
from exprsearch.rows.userdata import UserData, read_user_split, user_task

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = "linear1_2(relu(linear1_2(x,wb1)),wb2)"
_FILL = ["the", "movie", "was", "really", "a", "plot", "actor", "story", "very", "film"]
_CUE = {"neg": "bad", "neu": "okay", "pos": "good"}


def review_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """Three classes cued by one word: 'bad' neg, 'okay' neu, 'good' pos."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = ("neg", "neu", "pos")[i % 3]
        words = rng.sample(_FILL, 4)
        words.insert(rng.randrange(5), _CUE[label])
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_jsonl(path: Path, objs: list) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    return path


def score_objs(n: int, seed: int) -> list[dict]:
    """A regression set: the score is how many 'good's the text holds, over 3."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(0, 3)
        words = rng.sample(_FILL, 4) + ["good"] * k
        rng.shuffle(words)
        out.append({"text": " ".join(words), "score": k / 3})
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("userdata")
    for name, n, seed in (("reviews.csv", 40, 0), ("reviews_dev.csv", 15, 1)):
        rows = review_rows(n, seed)
        stars2 = [r[1] for r in rows[1:] + rows[:1]]  # the same labels, another order: another task
        write_csv(d / name, ["id", "review", "stars", "stars2"], [[i, t, y, y2] for i, ((t, y), y2) in
                                                                  enumerate(zip(rows, stars2))])
    write_jsonl(d / "scores.jsonl", score_objs(40, 0))
    write_jsonl(d / "scores_dev.jsonl", score_objs(15, 1))
    return d


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as exit_:
        rc = exit_.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


@pytest.fixture(scope="module")
def tiny(tiny_teacher, kd_cache) -> list[str]:  # noqa: F811
    return ["--teacher", tiny_teacher, "--cache-dir", kd_cache, "--device", "cpu", "--layers", "2", "--max-len", "32",
            "--batch-size", "16", "--steps", "5", "--warmup-steps", "5", "--teacher-epochs", "1", "--lr", "1e-3",
            "--latency-batch", "2", "--latency-len", "16"]


def reviews(d: Path, label: str = "stars") -> list[str]:
    return ["--train", d / "reviews.csv", "--dev", d / "reviews_dev.csv", "--text-columns", "review",
            "--label-column", label]


# -- reading -------------------------------------------------------------------------------------

def test_string_labels_sorted_integer_labels_by_value(data, tmp_path):
    t = user_task(UserData("reviews", str(data / "reviews.csv"), str(data / "reviews_dev.csv"), ("review",), "stars"))
    assert t.labels == ("neg", "neu", "pos") and t.metrics == ("acc", "macro_f1") and t.main == "acc"
    dev = read_user_split(t, "dev")
    assert [t.labels[int(y)] for y in dev.labels] == [y for _, y in review_rows(15, 1)]
    ints = write_csv(tmp_path / "ints.csv", ["text", "y"], [["a", 10], ["b", 2], ["c", 0], ["d", 2]])
    t2 = user_task(UserData("ints", str(ints), str(ints), ("text",), "y"))
    assert t2.labels == ("0", "2", "10") and read_user_split(t2, "train").labels == [2.0, 1.0, 0.0, 1.0]
    two = write_csv(tmp_path / "two.csv", ["text", "y"], [["a", "yes"], ["b", "no"]])
    assert user_task(UserData("two", str(two), str(two), ("text",), "y")).metrics == ("acc",)


def test_tsv_jsonl_and_csv_read_alike_and_pairs_have_two_columns(tmp_path):
    rows = [["a \"quoted\" premise", "its hypothesis", "yes"], ["another, with a comma", "no way", "no"]]
    csv_ = write_csv(tmp_path / "p.csv", ["s1", "s2", "label"], rows)
    tsv = tmp_path / "p.tsv"
    tsv.write_text("s1\ts2\tlabel\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    jsonl = write_jsonl(tmp_path / "p.jsonl", [{"s1": a, "s2": b, "label": y} for a, b, y in rows])
    got = []
    for f in (csv_, tsv, jsonl):
        t = user_task(UserData("pairs", str(f), str(f), ("s1", "s2"), "label"))
        ex = read_user_split(t, "train")
        got.append((t.labels, ex.texts, ex.labels))
    assert got[0] == got[1] == got[2] == (("no", "yes"), [tuple(r[:2]) for r in rows], [1.0, 0.0])


def test_the_config_carries_the_task_to_an_unpickling_process(data, monkeypatch):
    cfg = EvalConfig(tasks=("myreviews",), train_file=str(data / "reviews.csv"), dev_file=str(data / "reviews_dev.csv"),
                     text_columns=("review",), label_column="stars")
    monkeypatch.setattr(userdata, "_REGISTRY", {})  # a fresh worker process knows no user task ...
    with pytest.raises(ConfigError, match="unknown GLUE task 'myreviews'"):
        task("myreviews")
    again = pickle.loads(pickle.dumps(cfg))  # ... until its config arrives
    assert again == cfg and task("myreviews").labels == ("neg", "neu", "pos")


def test_glue_protocols_keep_their_hashes():
    from exprsearch.search.search import eval_hash
    assert set(USER_FIELDS) <= set(NEUTRAL)
    # the hashes of these protocols before the user-data fields existed (stores and caches stay valid)
    old = dict(heldout_rows=0, score_on="dev")  # today's defaults hold rows out; these are the old protocols
    assert eval_hash(EvalConfig(**old)) == "9fa641faa7a11a28"
    assert eval_hash(EvalConfig(tasks=("SST-2",), steps=7, **old)) == "a8b6963f50896a76"


def test_a_dataset_folder_saved_by_datasets(data, tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = review_rows(12, 0)
    names = ["pos", "neg", "neu"]  # the ClassLabel's own order is kept
    feats = datasets.Features({"review": datasets.Value("string"), "stars": datasets.ClassLabel(names=names)})
    ds = datasets.Dataset.from_dict({"review": [r for r, _ in rows], "stars": [names.index(y) for _, y in rows]},
                                    features=feats)
    ds.save_to_disk(str(tmp_path / "single"))
    datasets.DatasetDict({"train": ds, "validation": ds.select(range(6))}).save_to_disk(str(tmp_path / "dict"))
    for folder in ("single", "dict"):
        t = user_task(UserData("ds", str(tmp_path / folder), str(tmp_path / folder), ("review",), "stars"))
        dev = read_user_split(t, "dev")
        assert t.labels == ("pos", "neg", "neu") and [t.labels[int(y)] for y in dev.labels] == [y for _, y in rows][:len(dev)]
    assert len(read_user_split(t, "dev")) == 6 and read_user_split(t, "dev").path == tmp_path / "dict" / "validation"


def test_a_dataset_folder_without_datasets_says_how_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "ds").mkdir()
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DataError, match="pip install datasets"):
        user_task(UserData("ds", str(tmp_path / "ds"), str(tmp_path / "ds"), ("text",), "label"))


# -- every command ------------------------------------------------------------------------------

def test_eval_on_a_three_class_csv(capsys, data, tiny):
    rc, out, err = run(capsys, "eval", SPEC, *reviews(data), *tiny, "--json")
    assert rc == 0, err
    info = json.loads(out)
    (r,) = info["results"]
    assert r["status"] == "ok" and set(r["metrics"]) == {"reviews"}  # named after the file's stem
    assert set(r["metrics"]["reviews"]) == {"acc", "macro_f1", "acc_std", "heldout_acc", "heldout_macro_f1",
                                            "heldout_acc_std", "score"}  # the score's held-out rows, then dev
    assert r["score"] == pytest.approx(100 * r["metrics"]["reviews"]["heldout_acc"])  # scored on held-out rows
    assert set(info["teacher"]["reviews"]) == {"acc", "macro_f1"}
    assert info["config"]["train_file"] == str(data / "reviews.csv")


def test_eval_on_a_jsonl_regression_set(capsys, data, tiny):
    rc, out, err = run(capsys, "eval", SPEC, "--task", "scores", "--train", data / "scores.jsonl", "--dev",
                       data / "scores_dev.jsonl", "--text-columns", "text", "--label-column", "score", "--regression",
                       *tiny, "--json")
    assert rc == 0, err
    (r,) = json.loads(out)["results"]
    m = r["metrics"]["scores"]
    assert {"pearson", "spearman", "pearson_std", "score"} <= set(m) and -1 <= m["pearson"] <= 1
    assert r["score"] == pytest.approx(100 * m["heldout_pearson"])


def test_teacher_cache_keys_on_the_label_column(capsys, data, tiny):
    paths = []
    for label in ("stars", "stars2", "stars"):
        rc, out, err = run(capsys, "teacher", *reviews(data, label), *tiny, "--json")
        assert rc == 0, err
        paths.append(json.loads(out)["reviews"]["path"])
    assert paths[0] != paths[1] and paths[0] == paths[2]  # same file, another label column: another teacher


def test_distill_saves_the_label_names(capsys, data, tiny, tmp_path):
    out_dir = tmp_path / "student"
    rc, out, err = run(capsys, "distill", SPEC, *reviews(data), *tiny, "-o", out_dir, "--epochs", "1",
                       "--eval-every", "2", "--heldout-rows", "5")
    assert rc == 0, err
    cfg = json.loads((out_dir / "config.json").read_text())
    assert cfg["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}
    assert cfg["label2id"] == {"neg": 0, "neu": 1, "pos": 2}
    assert "reviews" in (out_dir / "README.md").read_text()


def test_search_on_two_worker_processes(capsys, data, tiny, tmp_path, monkeypatch):
    store = tmp_path / "runs.db"
    rc, out, err = run(capsys, "search", *reviews(data), *tiny, "--store", store, "--workers", "2", "--group", "2",
                       "--stages", "1", "--candidates", "4", "--population", "2", "--tournament", "2", "--json")
    assert rc == 0, err
    from exprsearch.search.store import Store
    rows = Store(store, readonly=True).candidates(Store(store, readonly=True).latest_run())
    assert len(rows) == 4 and all(r["status"] == "ok" and set(r["metrics"]) == {"reviews"} for r in rows)
    assert all(r["worker"].startswith("pid") for r in rows)  # scored in the worker processes
    monkeypatch.setattr(userdata, "_REGISTRY", {})  # show, as a later process: the task's files unknown
    rc, out, err = run(capsys, "show", "--store", store)
    assert rc == 0 and "reviews " in out and "±" in out


# -- bad files: one line naming file:line and the column, nothing stored ------------------------------

def _bad_files(d: Path) -> dict[str, tuple[list, str]]:
    """case -> (options, the expected message: '{d}' is the folder)."""
    rows = [[t, y] for t, y in review_rows(9, 0)]
    good = write_csv(d / "train.csv", ["review", "stars"], rows)
    write_csv(d / "other.csv", ["id", "review", "rating"], [[0, "a", "pos"]])
    write_csv(d / "empty_label.csv", ["review", "stars"], rows[:2] + [["no label here", ""]] + rows[2:])
    write_csv(d / "dev_new_label.csv", ["review", "stars"], rows[:1] + [["a new class", "mixed"]])
    write_jsonl(d / "scores.jsonl", [{"text": "a", "score": 0.5}, {"text": "b", "score": "high"}])
    write_jsonl(d / "keys.jsonl", [{"text": "a", "score": 0.5}, {"txt": "b", "score": 1}])
    (d / "broken.jsonl").write_text('{"text": "a", "score": 0.5}\n{"text": "b", "score": 1\n', encoding="utf-8")
    (d / "data.xlsx").write_text("?", encoding="utf-8")

    def cls(train, dev=good, label="stars"):
        return ["--train", d / train, "--dev", d / dev if isinstance(dev, str) else dev, "--text-columns", "review",
                "--label-column", label]

    def reg(train):
        return ["--train", d / train, "--dev", d / train, "--text-columns", "text", "--label-column", "score",
                "--regression"]
    return {
        "missing column": (cls("other.csv"), "{d}/other.csv:1: no column 'stars'; the file has columns 'id', 'review', "
                                             "'rating'"),
        "missing key": (reg("keys.jsonl"), "{d}/keys.jsonl:2: no key 'text' (did you mean 'txt'?); the line has keys "
                                           "'txt', 'score'"),
        "empty label": (cls("empty_label.csv"), "{d}/empty_label.csv:4: empty label in column 'stars'"),
        "not a number": (reg("scores.jsonl"), "{d}/scores.jsonl:2: label 'high' in column 'score' is not a number"),
        "unseen dev label": (cls("train.csv", "dev_new_label.csv"),
                             "{d}/dev_new_label.csv:3: label 'mixed' in column 'stars' is not a label of the training "
                             "file (neg, neu, pos)"),
        "unreadable jsonl": (reg("broken.jsonl"), "{d}/broken.jsonl:2: not a JSON object (Expecting ',' delimiter"),
        "unknown format": (cls("data.xlsx"), "{d}/data.xlsx: unknown format '.xlsx'"),
        "no such file": (cls("nowhere.csv"), "{d}/nowhere.csv: no such file"),
        "no label column": (cls("train.csv")[:-2], "your own data needs --train FILE --dev FILE --text-columns "
                                                   "COL[,COL2] --label-column COL: --label-column missing"),
        "a GLUE name": (["--task", "SST-2", *cls("train.csv")], "--task SST-2 is a GLUE task's name"),
    }


CASES = ["missing column", "missing key", "empty label", "not a number", "unseen dev label", "unreadable jsonl",
         "unknown format", "no such file", "no label column", "a GLUE name"]


@pytest.mark.parametrize("case", CASES)
def test_a_bad_file_is_one_line_and_nothing_is_stored(capsys, tmp_path, case):
    argv, message = _bad_files(tmp_path)[case]
    store = tmp_path / "runs.db"
    for command in (["eval", SPEC], ["search", "--store", store]):
        rc, out, err = run(capsys, *command, *argv, "--device", "cpu", "--cache-dir", tmp_path / "cache")
        assert rc == 2 and out == "" and err.count("\n") == 1, err
        assert err.startswith("error: " + message.format(d=tmp_path)), err
    assert not store.exists() and not (tmp_path / "cache" / "teachers").exists()


def test_skip_bad_rows_skips_and_counts_them(tmp_path):
    _bad_files(tmp_path)
    t = user_task(UserData("e", str(tmp_path / "empty_label.csv"), str(tmp_path / "empty_label.csv"), ("review",),
                           "stars", skip_bad_rows=True))
    ex = read_user_split(t, "train", skip_bad_rows=True)
    assert len(ex) == 9 and ex.skipped == 1
    with pytest.raises(DataError, match="use --skip-bad-rows"):
        read_user_split(t, "train")
