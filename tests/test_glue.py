"""exprsearch.rows.glue: every GLUE TSV layout, malformed rows, task lookup, metrics vs sklearn/scipy."""
from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from exprsearch.errors import ConfigError, ExprSearchError
from exprsearch.rows.glue import TASKS, DataError, compute_metrics, read_split, task
from exprsearch.rows.paths import bundled_glue

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "glue"


def _write(root: Path, name: str, split: str, lines: list[str], *, bom: bool = False, eol: str = "\n") -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{split}.tsv"
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + eol.join(lines).encode("utf-8") + eol.encode())
    return p


def _row(*cols) -> str:
    return "\t".join(str(c) for c in cols)


# -- one fixture per GLUE layout ---------------------------------------------------------------

MNLI_TRAIN_HEAD = ("index promptID pairID genre sentence1_binary_parse sentence2_binary_parse sentence1_parse "
                   "sentence2_parse sentence1 sentence2 label1 gold_label").split()
MNLI_DEV_HEAD = MNLI_TRAIN_HEAD[:-1] + ["label2", "label3", "label4", "label5", "gold_label"]


def _mnli_row(i, s1, s2, votes, gold):
    return _row(i, 1000 + i, f"{1000 + i}e", "fiction", f"( {s1} )", f"( {s2} )", f"(ROOT {s1})", f"(ROOT {s2})",
                s1, s2, *votes, gold)


LAYOUTS = {
    # name: (split, lines, bom, expected texts, expected labels)
    "CoLA": ("train", [
        _row("gj04", 1, "", "Our friends won't buy this analysis."),
        _row("gj04", 0, "*", "One more pseudo generalization and I'm giving up giving."),
        _row("cj99", 1, "", "The more you eat, the less you want."),
    ], False, [("Our friends won't buy this analysis.",), ("One more pseudo generalization and I'm giving up giving.",),
               ("The more you eat, the less you want.",)], [1.0, 0.0, 1.0]),
    "SST-2": ("train", [
        "sentence\tlabel",
        "hide new secretions from the parental units \t0",
        "that loves its characters \t1",
    ], False, [("hide new secretions from the parental units ",), ("that loves its characters ",)], [0.0, 1.0]),
    "MRPC": ("train", [
        "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
        _row(1, 702876, 702977, 'Amrozi accused his brother , whom he called " the witness " .',
             'Referring to him as only " the witness " , Amrozi accused his brother .'),
        _row(0, 2108705, 2108831, "Yucaipa owned Dominick 's before selling the chain .",
             "Yucaipa bought Dominick 's in 1995 ."),
    ], True, [('Amrozi accused his brother , whom he called " the witness " .',
               'Referring to him as only " the witness " , Amrozi accused his brother .'),
              ("Yucaipa owned Dominick 's before selling the chain .", "Yucaipa bought Dominick 's in 1995 .")],
       [1.0, 0.0]),
    "QQP": ("train", [
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
        _row(133273, 213221, 213222, "How is the life of a math student?", "Which level of prepration is enough?", 0),
        _row(402555, 536040, 536041, "How do I control my horny emotions?", "How do you control your horniness?", 1),
    ], False, [("How is the life of a math student?", "Which level of prepration is enough?"),
               ("How do I control my horny emotions?", "How do you control your horniness?")], [0.0, 1.0]),
    "STS-B": ("dev", [
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
        _row(0, "main-captions", "MSRvid", "2012test", "0000", "none", "none", "A man with a hard hat is dancing.",
             "A man wearing a hard hat is dancing.", "5.000"),
        _row(1, "main-captions", "MSRvid", "2012test", "0002", "none", "none", "A young child is riding a horse.",
             "A child is riding a horse.", "4.750"),
        _row(2, "main-news", "headlines", "2013", "0003", "none", "none", "Cats sleep.", "Stocks fell.", "0.000"),
    ], False, [("A man with a hard hat is dancing.", "A man wearing a hard hat is dancing."),
               ("A young child is riding a horse.", "A child is riding a horse."), ("Cats sleep.", "Stocks fell.")],
       [5.0, 4.75, 0.0]),
    "MNLI": ("train", [
        "\t".join(MNLI_TRAIN_HEAD),
        _mnli_row(0, "Conceptually cream skimming has two basic dimensions.", "Product and geography are what "
                  "make cream skimming work.", ["neutral"], "neutral"),
        # label1 (one annotator) differs from gold_label: the gold label is the one read
        _mnli_row(1, "you know during the season i guess", "You lose the things to the following level.",
                  ["contradiction"], "entailment"),
    ], False, [("Conceptually cream skimming has two basic dimensions.",
                "Product and geography are what make cream skimming work."),
               ("you know during the season i guess", "You lose the things to the following level.")], [2.0, 1.0]),
    "QNLI": ("train", [
        "index\tquestion\tsentence\tlabel",
        _row(0, "When did the third Digimon series begin?", "Unlike the two seasons before it, it was dark.",
             "not_entailment"),
        _row(1, "Which missile batteries often have individual launchers?", "When MANPADS is operated, it uses "
             "launchers.", "entailment"),
    ], False, [("When did the third Digimon series begin?", "Unlike the two seasons before it, it was dark."),
               ("Which missile batteries often have individual launchers?",
                "When MANPADS is operated, it uses launchers.")], [1.0, 0.0]),
    "RTE": ("train", [
        "index\tsentence1\tsentence2\tlabel",
        _row(0, "No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons of Mass Destruction Found in Iraq.",
             "not_entailment"),
        _row(1, "A place of sorrow became a place of celebration.", "Pope Benedict XVI is the new leader.",
             "entailment"),
    ], False, [("No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons of Mass Destruction Found in Iraq."),
               ("A place of sorrow became a place of celebration.", "Pope Benedict XVI is the new leader.")],
       [1.0, 0.0]),
    "WNLI": ("train", [
        "index\tsentence1\tsentence2\tlabel",
        _row(0, "I stuck a pin through a carrot. When I pulled the pin out, it had a hole.",
             "The carrot had a hole.", 1),
        _row(1, "John couldn't see the stage with Billy in front of him because he is so short.",
             "Billy is so short.", 0),
    ], False, [("I stuck a pin through a carrot. When I pulled the pin out, it had a hole.", "The carrot had a hole."),
               ("John couldn't see the stage with Billy in front of him because he is so short.",
                "Billy is so short.")], [1.0, 0.0]),
}


def test_layouts_cover_every_task():
    assert set(LAYOUTS) == set(TASKS)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_standard_layout_parses(tmp_path, name):
    split, lines, bom, texts, labels = LAYOUTS[name]
    path = _write(tmp_path, name, split, lines, bom=bom)
    ex = read_split(tmp_path, name, split)
    assert ex.texts == texts
    assert ex.labels == labels
    assert ex.path == path and ex.skipped == 0 and len(ex) == len(texts)
    assert ex.task is TASKS[name]
    assert all(len(t) == len(TASKS[name].text) for t in ex.texts)
    if not TASKS[name].regression:  # class ids index the task's label vocabulary
        assert all(0 <= y < TASKS[name].num_labels and y == int(y) for y in ex.labels)


@pytest.mark.parametrize("name", ["SST-2", "MRPC", "CoLA"])
def test_crlf_line_endings_read_the_same(tmp_path, name):
    split, lines, bom, texts, labels = LAYOUTS[name]
    _write(tmp_path, name, split, lines, bom=bom, eol="\r\n")
    ex = read_split(tmp_path, name, split)
    assert ex.texts == texts and ex.labels == labels


def test_mnli_dev_files_use_gold_label(tmp_path):
    rows = [_mnli_row(0, "The new rights are nice enough", "Everyone really likes the newest benefits",
                      ["neutral", "entailment", "neutral", "neutral", "neutral"], "neutral"),
            _mnli_row(1, "This site includes a list of all award winners.", "The Government Executive articles "
                      "housed on the website are not able to be searched.",
                      ["contradiction", "contradiction", "contradiction", "contradiction", "contradiction"],
                      "contradiction"),
            _mnli_row(2, "uh i don't know i i have mixed emotions", "I like him for the most part.",
                      ["neutral", "contradiction", "entailment", "entailment", "neutral"], "entailment")]
    for stem in TASKS["MNLI"].dev:
        _write(tmp_path, "MNLI", stem, ["\t".join(MNLI_DEV_HEAD)] + rows)
    assert TASKS["MNLI"].dev == ("dev_matched", "dev_mismatched")
    assert len(MNLI_DEV_HEAD) == 16 and len(MNLI_TRAIN_HEAD) == 12
    for stem in TASKS["MNLI"].dev:
        ex = read_split(tmp_path, "MNLI", stem)
        assert ex.labels == [2.0, 0.0, 1.0]  # contradiction, entailment, neutral
        assert ex.texts[2] == ("uh i don't know i i have mixed emotions", "I like him for the most part.")


def test_limit_reads_only_the_first_rows(tmp_path):
    _write(tmp_path, "SST-2", "train", ["sentence\tlabel"] + [f"s{i}\t{i % 2}" for i in range(10)])
    ex = read_split(tmp_path, "SST-2", "train", limit=4)
    assert ex.texts == [("s0",), ("s1",), ("s2",), ("s3",)] and ex.labels == [0.0, 1.0, 0.0, 1.0]
    assert ex.head(2).texts == [("s0",), ("s1",)] and ex.head(None) is ex


# -- real and bundled data ---------------------------------------------------------------------

REAL_COUNTS = {("CoLA", "train"): 8551, ("SST-2", "train"): 67349, ("MRPC", "train"): 3668,
               ("RTE", "train"): 2490, ("CoLA", "dev"): 1043, ("SST-2", "dev"): 872, ("MRPC", "dev"): 408,
               ("RTE", "dev"): 277}


@pytest.mark.parametrize("name,split", list(REAL_COUNTS))
def test_real_shared_files_parse(name, split):
    if not (SHARED / name / f"{split}.tsv").is_file():
        pytest.skip(f"no shared GLUE data at {SHARED}")
    ex = read_split(SHARED, name, split)
    assert len(ex) == REAL_COUNTS[name, split] and ex.skipped == 0
    assert set(ex.labels) == {0.0, 1.0}
    assert all(all(s.strip() for s in t) for t in ex.texts)


@pytest.mark.parametrize("name", ["CoLA", "SST-2", "MRPC", "RTE"])
def test_bundled_slices_parse(name):
    glue = bundled_glue()
    train, dev = read_split(glue, name, "train"), read_split(glue, name, "dev")
    # data/glue/README.md: SST-2's first 4,000 training rows and every later whole sentence (10,480 rows)
    assert (len(train), len(dev)) == ((10480, 872) if name == "SST-2" else (600, 200))
    assert train.skipped == dev.skipped == 0
    assert set(train.labels) == set(dev.labels) == {0.0, 1.0}
    assert len(train.texts[0]) == len(TASKS[name].text)
    if (SHARED / name / "train.tsv").is_file():  # the slices are the first rows of the real files
        for split, ex in (("train", train), ("dev", dev)):
            n = 4000 if name == "SST-2" and split == "train" else len(ex)
            real = read_split(SHARED, name, split, limit=n)
            assert real.texts == ex.texts[:n] and real.labels == ex.labels[:n]
        if name == "SST-2":  # the quick preset holds out the same sentences from the bundle as from the file
            from exprsearch.rows.holdout import task_rows
            a, b = (task_rows(g, TASKS[name], heldout_rows=1000, max_train=4000) for g in (glue, SHARED))
            assert a.heldout.texts == b.heldout.texts


# -- malformed files ---------------------------------------------------------------------------

def test_bad_label_names_file_and_line(tmp_path):
    p = _write(tmp_path, "SST-2", "train", ["sentence\tlabel", "fine\t1", "broken\t2", "ok\t0"])
    with pytest.raises(DataError) as info:
        read_split(tmp_path, "SST-2", "train")
    assert f"{p}:3" in str(info.value) and "'2'" in str(info.value)


def test_too_few_columns_names_file_and_line(tmp_path):
    head, *rows = LAYOUTS["MRPC"][1]
    p = _write(tmp_path, "MRPC", "train", [head, rows[0], "1\t702876\tonly one sentence", rows[1]], bom=True)
    with pytest.raises(DataError) as info:
        read_split(tmp_path, "MRPC", "train")
    assert f"{p}:3" in str(info.value) and "columns" in str(info.value)


def test_headerless_cola_bad_label_line_number(tmp_path):
    p = _write(tmp_path, "CoLA", "dev", [_row("gj04", 1, "", "a"), _row("gj04", 0, "*", "b"),
                                         _row("gj04", "x", "", "c")])
    with pytest.raises(DataError, match=rf"{p}:3"):
        read_split(tmp_path, "CoLA", "dev")


@pytest.mark.parametrize("score", ["high", "nan", "inf", ""])
def test_stsb_non_numeric_score(tmp_path, score):
    head, *rows = LAYOUTS["STS-B"][1]
    bad = rows[1].rsplit("\t", 1)[0] + "\t" + score
    p = _write(tmp_path, "STS-B", "dev", [head, rows[0], bad])
    with pytest.raises(DataError, match=rf"{p}:3"):
        read_split(tmp_path, "STS-B", "dev")


def test_skip_bad_rows_counts_and_reads_the_rest(tmp_path):
    _write(tmp_path, "RTE", "train", ["index\tsentence1\tsentence2\tlabel", _row(0, "a", "b", "entailment"),
                                      _row(1, "c", "d", "maybe"), _row(2, "only one"),
                                      _row(3, "e", "f", "not_entailment"), ""])
    ex = read_split(tmp_path, "RTE", "train", skip_bad_rows=True)
    assert ex.skipped == 2
    assert ex.texts == [("a", "b"), ("e", "f")] and ex.labels == [0.0, 1.0]


def test_only_bad_rows_is_an_error_even_when_skipping(tmp_path):
    _write(tmp_path, "SST-2", "dev", ["sentence\tlabel", "a\tpositive"])
    with pytest.raises(DataError, match="no usable rows"):
        read_split(tmp_path, "SST-2", "dev", skip_bad_rows=True)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_split(tmp_path, "RTE", "train")
    _write(tmp_path, "RTE", "test", ["index\tsentence1\tsentence2", "0\ta\tb"])
    with pytest.raises(DataError) as info:
        read_split(tmp_path, "RTE", "dev")
    assert "dev.tsv" in str(info.value) and "test.tsv" in str(info.value)  # names what is there


def test_missing_header_column(tmp_path):
    p = _write(tmp_path, "QNLI", "train", ["index\tquestion\ttext\tlabel", _row(0, "q", "s", "entailment")])
    with pytest.raises(DataError) as info:
        read_split(tmp_path, "QNLI", "train")
    assert f"{p}:1" in str(info.value) and "sentence" in str(info.value)


def test_not_utf8(tmp_path):
    d = tmp_path / "SST-2"
    d.mkdir()
    (d / "train.tsv").write_bytes(b"sentence\tlabel\ncaf\xe9\t1\n")
    with pytest.raises(DataError, match="UTF-8"):
        read_split(tmp_path, "SST-2", "train")


def test_data_error_is_an_exprsearch_error():
    assert issubclass(DataError, ExprSearchError)


# -- task lookup -------------------------------------------------------------------------------

@pytest.mark.parametrize("alias,name", [("sst2", "SST-2"), ("SST-2", "SST-2"), ("sts-b", "STS-B"),
                                        ("stsb", "STS-B"), ("STS_B", "STS-B"), ("cola", "CoLA"),
                                        ("Mrpc", "MRPC"), ("mnli", "MNLI"), ("qnli", "QNLI"), ("wnli", "WNLI"),
                                        ("sts", "STS-B")])
def test_task_aliases(alias, name):
    assert task(alias) is TASKS[name]


@pytest.mark.parametrize("typo,best", [("SST3", "SST-2"), ("RTEE", "RTE"), ("MPRC", "MRPC"), ("QNL", "QNLI")])
def test_task_typo_suggests(typo, best):
    with pytest.raises(ConfigError) as info:
        task(typo)
    assert f"did you mean {best!r}" in str(info.value)


def test_task_unknown_lists_choices():
    with pytest.raises(ConfigError) as info:
        task("imagenet")
    assert all(name in str(info.value) for name in TASKS)


def test_mnli_m_alias_bug():
    assert task("mnli-m") is TASKS["MNLI"]


def test_lowercase_typo_suggestion_bug():
    with pytest.raises(ConfigError, match="did you mean 'RTE'"):
        task("rtee")


# -- metrics vs sklearn / scipy ----------------------------------------------------------------

def _trials(n: int = 150):
    rng = random.Random(1234)
    for _ in range(n):
        yield rng, rng.randint(2, 80)


def test_classification_metrics_match_sklearn():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on degenerate (all one class) trials
        checked = 0
        for rng, n in _trials():
            p1 = rng.random()
            y = [int(rng.random() < p1) for _ in range(n)]
            noise = rng.random()
            p = [yi if rng.random() > noise else 1 - yi for yi in y]
            if rng.random() < 0.1:
                p = [rng.choice([0, 1])] * n  # constant predictions: MCC 0, F1 0 or not
            cola, mrpc = compute_metrics("CoLA", y, p), compute_metrics("MRPC", y, p)
            assert set(cola) == {"mcc", "acc"} and set(mrpc) == {"f1", "acc"}
            assert cola["mcc"] == pytest.approx(matthews_corrcoef(y, p), abs=1e-9)
            assert cola["acc"] == pytest.approx(accuracy_score(y, p), abs=1e-9)
            assert mrpc["f1"] == pytest.approx(f1_score(y, p, zero_division=0), abs=1e-9)
            assert mrpc["acc"] == cola["acc"]
            checked += 1
    assert checked == 150


def test_multiclass_accuracy_matches_sklearn():
    for rng, n in _trials(60):
        y = [rng.randrange(3) for _ in range(n)]
        p = [rng.randrange(3) if rng.random() < 0.5 else yi for yi in y]
        assert compute_metrics("MNLI", y, p)["acc"] == pytest.approx(accuracy_score(y, p), abs=1e-9)


def test_regression_metrics_match_scipy_including_ties():
    checked = 0
    for rng, n in _trials():
        n = max(n, 3)
        if rng.random() < 0.5:  # heavy ties, like STS-B's 0.2 grid of scores
            y = [round(rng.randint(0, 25) * 0.2, 1) for _ in range(n)]
            p = [round(yi + rng.choice([-0.4, -0.2, 0.0, 0.2, 0.4, 1.0]), 1) for yi in y]
        else:
            y = [rng.uniform(0, 5) for _ in range(n)]
            p = [yi + rng.gauss(0, rng.uniform(0.1, 3)) for yi in y]
        if len(set(y)) < 2 or len(set(p)) < 2:
            continue
        m = compute_metrics("STS-B", y, p)
        assert set(m) == {"pearson", "spearman"}
        assert m["pearson"] == pytest.approx(stats.pearsonr(y, p)[0], abs=1e-9)
        assert m["spearman"] == pytest.approx(stats.spearmanr(y, p)[0], abs=1e-9)
        checked += 1
    assert checked > 140


def test_spearman_ties_exact_case():
    y, p = [1, 2, 2, 3, 3, 3], [1, 1, 2, 2, 3, 3]
    assert compute_metrics("STS-B", y, p)["spearman"] == pytest.approx(stats.spearmanr(y, p)[0], abs=1e-12)


def test_metrics_reject_bad_lengths():
    with pytest.raises(ExprSearchError):
        compute_metrics("SST-2", [1, 0], [1])
    with pytest.raises(ExprSearchError):
        compute_metrics("SST-2", [], [])


def test_metrics_accept_numpy_and_task_objects():
    y, p = np.array([1.0, 0.0, 1.0, 1.0]), np.array([1.0, 0.0, 0.0, 1.0])
    assert compute_metrics(TASKS["CoLA"], y, p) == compute_metrics("cola", list(y), list(p))


@pytest.mark.parametrize("content", ["", "\n\n", "  \r\n"])
def test_an_empty_file_says_empty_file(tmp_path, content):
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text(content)
    with pytest.raises(DataError, match="empty file") as info:
        read_split(tmp_path, "SST-2", "train")
    assert "header" not in str(info.value).split("empty file")[0]  # not reported as a bad header
