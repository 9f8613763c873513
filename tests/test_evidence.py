"""Issue 28: evidence a reviewer would accept -- no leaks, exact baselines, an unbiased warm-up.

* held-out rows are whole rows drawn to resemble dev, and nothing of them is trained on, by the
  teacher neither (its weights do not change when the held-out rows' labels do);
* a signal planted in the dev rows only (every dev label inverted) changes no selection: every
  stored score, the re-ranking, stage 3, the final protocol's checkpoint and distill's seed;
* the op-sampling warm-up draws the standard FFN per layer with its own probability (no layer
  position is favoured), from the search's own space, so a gated space trains the gate ``wb3``.
"""
from __future__ import annotations

import dataclasses
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest_kd import sentiment_rows
from conftest_search import (  # noqa: F401
    easy_glue,
    kd_cache,
    one_thread,
    quiet,
    run_search,
    search_ecfg,
    tiny_teacher,
)

from exprsearch.kd.distill import ExprPool, SupernetStudent
from exprsearch.kd.evaluate import Evaluator
from exprsearch.kd.final import FinalConfig, finetune
from exprsearch.rows.glue import Examples, task
from exprsearch.rows.holdout import draw_heldout, task_rows
from exprsearch.lang.standard import STANDARD_SPEC, standard_ffn
from exprsearch.search.search import SearchConfig, eval_hash
from exprsearch.space.generate import Space

pytestmark = pytest.mark.usefixtures("one_thread")


# -- held-out rows -----------------------------------------------------------------------------

def _sst2_like(root: Path, sentences: int = 120, seed: int = 0) -> Path:
    """An SST-2-shaped folder: training sentences plus labelled phrases of each (as SST-2 has),
    and a dev set of whole sentences."""
    rows = sentiment_rows(sentences, seed)
    train = list(rows)
    for text, label in rows:  # two phrases of every sentence, labelled like it
        words = text.split()
        train += [(" ".join(words[:2]), label), (" ".join(words[1:-1]), label)]
    random.Random(seed).shuffle(train)
    d = root / "SST-2"
    d.mkdir(parents=True, exist_ok=True)
    (d / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in train), encoding="utf-8")
    (d / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in sentiment_rows(40, seed + 1)),
                               encoding="utf-8")
    return root


def test_held_out_rows_are_whole_rows_like_dev_and_nothing_of_them_is_trained(tmp_path):
    root = _sst2_like(tmp_path)
    t = task("SST-2")
    rows = task_rows(root, t, heldout_rows=30)
    held = [h[0] for h in rows.heldout.texts]
    train = [r[0] for r in rows.train.texts]
    assert len(held) == 30
    full = [r[0] for r in task_rows(root, t).train.texts]
    for h in held:  # a whole sentence: no other training row contains it
        assert not any(h != f and f" {h} " in f" {f} " for f in full)
    for r in train:  # no phrase of a held-out sentence, no copy of one, is trained on
        assert not any(f" {r} " in f" {h} " for h in held)
    assert rows.removed >= 30  # their phrases left the training rows
    dev_mean = sum(len(r[0].split()) for r in rows.dev.texts) / len(rows.dev)
    held_mean = sum(len(h.split()) for h in held) / len(held)
    train_mean = sum(len(r.split()) for r in full) / len(full)
    assert abs(held_mean - dev_mean) < 0.5 < abs(train_mean - dev_mean)  # like dev, unlike the mixed training rows
    assert task_rows(root, t, heldout_rows=30).heldout.texts == rows.heldout.texts  # fixed: every seed scores the same
    capped = task_rows(root, t, heldout_rows=30, max_train=50)
    assert capped.heldout.texts == rows.heldout.texts and len(capped.train) == 50  # max_train cuts after the hold-out


def test_the_draw_reads_texts_only():
    t = task("SST-2")
    texts = [(f"w{i} " + "a " * (i % 7),) for i in range(50)]
    a = Examples(t, Path("x"), texts, [0.0] * 50)
    b = Examples(t, Path("x"), texts, [float(i % 2) for i in range(50)])
    dev = Examples(t, Path("d"), texts[:10], [1.0] * 10)
    assert draw_heldout(a, dev, 8) == draw_heldout(b, dev, 8)


def _flip_labels(src: Path, dst: Path, split: str, rows: set[str] | None = None) -> Path:
    """A copy of the GLUE folder ``src`` whose ``split`` labels are inverted (only on ``rows``, by text)."""
    shutil.copytree(src, dst)
    f = dst / "SST-2" / f"{split}.tsv"
    lines = f.read_text(encoding="utf-8").splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        text, label = line.rsplit("\t", 1)
        out.append(f"{text}\t{1 - int(label)}" if rows is None or text.strip() in rows else line)
    f.write_text("\n".join(out) + "\n", encoding="utf-8")
    return dst


def test_the_teacher_never_trains_on_held_out_rows(tmp_path, easy_glue, tiny_teacher):
    """Invert the labels of the held-out rows in the training file: the fine-tuned teacher is
    bit-for-bit the same (its cache key differs -- another file -- so it really trains again)."""
    from exprsearch.kd.teacher import TeacherConfig, finetune_teacher, load_teacher
    t = task("SST-2")
    cfg = TeacherConfig(epochs=1.0, batch_size=16, max_len=32, max_train=64, heldout_rows=20, lr=1e-3)
    held = {h[0].strip() for h in task_rows(easy_glue, t, heldout_rows=20).heldout.texts}
    flipped = _flip_labels(easy_glue, tmp_path / "glue", "train", held)
    dirs = []
    for root in (easy_glue, flipped):
        torch.manual_seed(0)
        dirs.append(finetune_teacher(t, root, tiny_teacher, cfg, tmp_path / "cache", torch.device("cpu"), log=quiet))
    assert dirs[0] != dirs[1]
    a, b = (load_teacher(d).state_dict() for d in dirs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_dev_only_signal_changes_no_selection(tmp_path, easy_glue, search_ecfg):
    """Every dev label inverted: a selection that read dev would now prefer the opposite.  The
    search's stored scores (stages 1-3, re-ranked), the final protocol's checkpoints and distill's
    kept seed are identical; only the reported dev numbers move."""
    from exprsearch.ship.distill import distill
    inverted = _flip_labels(easy_glue, tmp_path / "glue", "dev")
    runs, finals, evs = [], [], []
    for i, root in enumerate((easy_glue, inverted)):
        ecfg = dataclasses.replace(search_ecfg, data_dir=str(root))
        _, _, rows = run_search(tmp_path / f"s{i}.db", ecfg, stages="1,2,3", candidates=3, stage2_candidates=2,
                                stage3_candidates=2, rerank=2, rerank_seeds=1)
        runs.append([(r["key"], r["stage"], r["score"], r["metrics"], r.get("seed_scores")) for r in rows])
        ev = Evaluator(dataclasses.replace(ecfg, group=2), log=quiet)
        evs.append(ev)
        fc = FinalConfig(epochs=1, eval_every=2, dropout=0.0, min_steps=8, min_evals=4)
        finals.append(finetune(ev, [STANDARD_SPEC.broadcast(2)], "SST-2", seed=10_000, cfg=fc, keep_models=False)[0])
    assert runs[0] == runs[1] and {r[1] for r in runs[0]} == {1, 2, 3}
    assert not any(k.startswith(("acc", "mcc")) for row in runs[0] for m in row[3].values() for k in m)  # dev unread
    a, b = finals
    assert (a.best_step, a.heldout, a.curve) == (b.best_step, b.heldout, b.curve)
    assert a.dev["acc"] == pytest.approx(1 - b.dev["acc"])  # the plant is there for whoever reads dev
    assert evs[0].state["SST-2"].teacher_metrics["acc"] != evs[1].state["SST-2"].teacher_metrics["acc"]
    kept = [distill(ev, STANDARD_SPEC, tmp_path / f"out{i}", FinalConfig(epochs=1, min_steps=4, min_evals=2), seeds=2,
                    log=quiet)[0] for i, ev in enumerate(evs)]
    assert kept[0]["chosen_seed"] == kept[1]["chosen_seed"]
    assert kept[0]["protocol"]["seeds"] == [10_000, 10_001]


# -- the warm-up --------------------------------------------------------------------------------

def test_the_warm_up_draws_the_standard_ffn_per_layer_and_every_slot_of_a_gated_space():
    layers, steps = 6, 1500
    pool = ExprPool(random.Random(0), size=16, space=Space(gates=True))
    rng = random.Random(1)
    standard, gated = Counter(), Counter()
    for _ in range(steps):
        x, y = rng.choice((1, 2, 3, 4)), rng.choice((1, 2, 3, 4))
        for layer in range(layers):
            e = pool.draw(rng, x, y)
            standard[layer] += e is standard_ffn(x, y)
            gated[layer] += "wb3" in str(e)
    for layer in range(layers):  # about a quarter in every position: none favoured
        assert 0.21 <= standard[layer] / steps <= 0.29
        assert gated[layer] >= steps // 4  # the gate slot is drawn in every layer, often
    assert all(any("wb3" in str(e) for e in es) for es in pool.exprs.values())  # every (X, Y) has gated forms
    plain = ExprPool(random.Random(0), size=16)  # the reference space has no gate
    assert not any("wb3" in str(e) for es in plain.exprs.values() for e in es)


def test_a_search_warms_up_on_its_own_space_and_a_gated_warm_up_trains_the_gate(tmp_path, search_ecfg):
    from exprsearch.search.search import Search
    from exprsearch.search.store import Store
    ecfg = dataclasses.replace(search_ecfg, warmup_sampling="space", warmup_steps=12)
    s = Search(Store(tmp_path / "s.db"), SearchConfig(stages="1", candidates=2, population=2, tournament=2,
                                                       gates=True), ecfg, log=quiet, progress=False)
    assert s.ecfg.warmup_space == Space(gates=True).describe() and eval_hash(s.ecfg) != eval_hash(ecfg)
    sups = {}
    for space in ("", Space(gates=True).describe()):
        ev = Evaluator(dataclasses.replace(ecfg, warmup_space=space), log=quiet)
        sups[space] = ev.state["SST-2"].supernet
    teacher = ev.state["SST-2"].teacher.bert.encoder.layer
    for space, sup in sups.items():
        assert isinstance(sup, SupernetStudent)
        wb3 = sup.supers[0].blocks[0].wb3.weight
        start = teacher[0].intermediate.dense.weight[:wb3.shape[0], :wb3.shape[1]]
        assert torch.equal(wb3, start) == (space == "")  # only a gated pool moves the gate away from its start


def test_held_out_rows_and_the_pool_are_part_of_the_protocol_identity(search_ecfg):
    from exprsearch.kd.protocol import NEUTRAL, EvalConfig
    base = eval_hash(search_ecfg)
    assert eval_hash(dataclasses.replace(search_ecfg, heldout_rows=20)) != base
    assert eval_hash(dataclasses.replace(search_ecfg, warmup_space=Space(gates=True).describe())) != base
    old = EvalConfig.from_stored({"tasks": ["SST-2"]})  # a config stored before the fields existed
    assert (old.heldout_rows, old.score_on, old.warmup_space) == (NEUTRAL["heldout_rows"], "dev", "")


def test_a_search_never_ranks_on_the_rows_it_reports(tmp_path, search_ecfg):
    from exprsearch.errors import ConfigError
    from exprsearch.search.search import Search
    from exprsearch.search.store import Store
    with pytest.raises(ConfigError, match="held-out"):
        Search(Store(tmp_path / "s.db"), SearchConfig(stages="1", candidates=2),
               dataclasses.replace(search_ecfg, heldout_rows=0, score_on="dev"), log=quiet)
