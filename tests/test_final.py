"""The final protocol (issue 24 item 4) on the CPU: a full KD fine-tune whose checkpoint is
chosen on held-out training rows, never on the dev set."""
from __future__ import annotations

import dataclasses

import pytest
from conftest_search import easy_glue, kd_cache, one_thread, quiet, search_ecfg, tiny_teacher  # noqa: F401

from exprsearch.errors import ConfigError
from exprsearch.kd.evaluate import Evaluator
from exprsearch.kd.final import FinalConfig, final_steps, finetune
from exprsearch.lang.parsing import parse_spec
from exprsearch.lang.standard import STANDARD_SPEC

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ev(search_ecfg):
    return Evaluator(dataclasses.replace(search_ecfg, heldout_rows=12), log=quiet)


def test_the_best_held_out_checkpoint_is_kept(ev):
    cfg = FinalConfig(epochs=3, eval_every=2, dropout=0.0)
    specs = [STANDARD_SPEC.broadcast(2), parse_spec("linear1_2(relu(linear1_2(x,wb1)),wb2)").broadcast(2)]
    runs = finetune(ev, specs, "SST-2", seed=0, cfg=cfg)
    steps = final_steps(ev, "SST-2", cfg)
    assert steps == 3 * 4  # 52 training rows at batch 16: 4 batches an epoch
    for r in runs:
        assert r.status == "ok" and r.steps == steps
        assert [s for s, _ in r.curve] == list(range(2, steps + 1, 2))
        assert r.heldout == max(v for _, v in r.curve) and (r.best_step, r.heldout) in r.curve
        assert 0.0 <= r.dev["acc"] <= 1.0 and "acc_std" in r.dev
        # the kept model is the chosen checkpoint: it scores the held-out rows as recorded
        from exprsearch.kd.train import dev_metrics
        st = ev.state["SST-2"]
        assert dev_metrics(r.model, st.heldout, st.task, ev.device)["acc"] == pytest.approx(r.heldout)


def test_a_candidate_in_a_group_trains_as_alone(ev):
    cfg = FinalConfig(epochs=1, eval_every=2, dropout=0.0)
    a = parse_spec("linear1_2(relu(linear1_2(x,wb1)),wb2)").broadcast(2)
    together = finetune(ev, [STANDARD_SPEC.broadcast(2), a], "SST-2", seed=1, cfg=cfg)[1]
    alone = finetune(ev, [a], "SST-2", seed=1, cfg=cfg)[0]
    assert together.curve == alone.curve and together.dev == pytest.approx(alone.dev)


def test_the_final_protocol_needs_held_out_rows(search_ecfg):
    plain = Evaluator(search_ecfg, log=quiet)
    with pytest.raises(ConfigError, match="held-out"):
        finetune(plain, [STANDARD_SPEC], "SST-2", seed=0, cfg=FinalConfig(epochs=1))
    with pytest.raises(ConfigError):
        FinalConfig(epochs=0)
