"""Issue 24 items 1 and 5 on the CPU: the op-sampling supernet warm-up and scoring on held-out
training rows.

* ``warmup_sampling="space"`` warms the supernet with a random expression of the space per layer
  per step (the standard FFN every 4th draw), under its own cache key; the default keeps the
  old key and the old evaluation hash;
* ``heldout_rows`` keeps a fixed slice of training rows out of training (the same for every
  training seed), and ``score_on`` reads the score from it for small dev sets.
"""
from __future__ import annotations

import dataclasses
import random

import pytest
from conftest_search import easy_glue, kd_cache, one_thread, quiet, search_ecfg, tiny_teacher  # noqa: F401

from exprsearch.errors import ConfigError
from exprsearch.kd.distill import ExprPool, SupernetStudent
from exprsearch.kd.evaluate import Evaluator
from exprsearch.lang.standard import STANDARD_SPEC, standard_ffn
from exprsearch.search.search import eval_hash

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_pool_draws_expressions_of_the_space_and_keeps_the_standard_ffn():
    pool = ExprPool(random.Random(0), size=8, standard_every=4)
    rng = random.Random(1)
    draws = [pool.draw(rng, 1, 2) for _ in range(40)]
    assert sum(e is standard_ffn(1, 2) for e in draws) >= 10  # every 4th draw, at least
    others = {str(e) for e in draws if e is not standard_ffn(1, 2)}
    assert len(others) >= 4 and all(e.linears()[0].op.name == "linear1_2" for e in draws)
    acts = {n.op.name for e in draws for n in e.walk() if n.op.is_activation}
    assert len(acts) >= 3  # not only GELU


def test_sampling_the_space_warms_a_supernet_under_its_own_cache_key(search_ecfg):
    logs: list[str] = []
    cfg = dataclasses.replace(search_ecfg, warmup_sampling="space", warmup_steps=6)
    ev = Evaluator(cfg, log=logs.append)
    assert any("a random expression of the space per layer per step" in m for m in logs)
    again: list[str] = []
    Evaluator(cfg, log=again.append)
    assert not any("warming up" in m for m in again)  # cached under its key
    plain: list[str] = []
    Evaluator(dataclasses.replace(cfg, warmup_sampling="standard"), log=plain.append)
    assert any("warming up" in m and "random expression" not in m for m in plain)
    sup: SupernetStudent = ev.state["SST-2"].supernet
    assert ev.evaluate(STANDARD_SPEC).status == "ok" and sup.cfg.layers == 2


def test_new_fields_at_their_defaults_keep_the_evaluation_hash(search_ecfg):
    base = eval_hash(search_ecfg)
    assert eval_hash(dataclasses.replace(search_ecfg, warmup_sampling="standard", heldout_rows=0)) == base
    assert eval_hash(dataclasses.replace(search_ecfg, warmup_sampling="space")) != base
    assert eval_hash(dataclasses.replace(search_ecfg, heldout_rows=16)) != base


def test_held_out_rows_are_fixed_kept_out_of_training_and_scored(search_ecfg):
    cfg = dataclasses.replace(search_ecfg, heldout_rows=16, score_on="heldout")  # 64 rows: at most 12 held out
    ev = Evaluator(cfg, log=quiet)
    st = ev.state["SST-2"]
    assert len(st.heldout) == 12 and len(st.train.enc) == 64 - 12
    held = {tuple(r) for r in st.heldout.input_ids.tolist()}
    assert not held & {tuple(r) for r in st.train.enc.input_ids.tolist()}
    other = Evaluator(dataclasses.replace(cfg, seed=1), log=quiet).state["SST-2"]
    assert {tuple(r) for r in other.heldout.input_ids.tolist()} == held  # the same rows for every seed
    r = ev.evaluate(STANDARD_SPEC)
    m = r.metrics["SST-2"]
    assert r.status == "ok" and "heldout_acc" in m and "acc" in m
    assert r.score == pytest.approx(100 * m["heldout_acc"]) and m["score"] == m["heldout_acc"]


def test_score_on_auto_uses_held_out_rows_only_for_small_dev_sets(search_ecfg):
    cfg = dataclasses.replace(search_ecfg, heldout_rows=16, score_on="auto")
    st = Evaluator(cfg, log=quiet).state["SST-2"]
    assert st.scored(cfg)[1] == "heldout"  # 32 dev rows: small
    assert cfg.scored_on_heldout(5000) is False


@pytest.mark.parametrize("kw, match", [(dict(score_on="heldout"), "needs held-out rows"),
                                       (dict(warmup_sampling="all"), "warmup_sampling"),
                                       (dict(score_on="train", heldout_rows=8), "score_on")])
def test_bad_settings_are_refused(search_ecfg, kw, match):
    with pytest.raises(ConfigError, match=match):
        dataclasses.replace(search_ecfg, **kw)
