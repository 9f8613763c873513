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
    cfg = FinalConfig(epochs=3, eval_every=2, dropout=0.0, min_steps=0, min_evals=1)
    specs = [STANDARD_SPEC.broadcast(2), parse_spec("linear1_2(relu(linear1_2(x,wb1)),wb2)").broadcast(2)]
    runs = finetune(ev, specs, "SST-2", seed=0, cfg=cfg)
    steps = final_steps(ev, "SST-2", cfg)
    assert steps == 3 * 4  # 64 training rows at batch 16: 4 batches an epoch
    for r in runs:
        assert r.status == "ok" and r.steps == steps
        assert [s for s, _ in r.curve] == list(range(2, steps + 1, 2))
        assert r.heldout == max(v for _, v in r.curve) and (r.best_step, r.heldout) in r.curve
        assert 0.0 <= r.dev["acc"] <= 1.0 and "acc_std" in r.dev
        # the kept model is the chosen checkpoint: it scores the held-out rows as recorded
        from exprsearch.engine.train import dev_metrics
        st = ev.state["SST-2"]
        assert dev_metrics(r.model, st.heldout, st.task, ev.device)["acc"] == pytest.approx(r.heldout)


def test_a_candidate_in_a_group_trains_as_alone(ev):
    cfg = FinalConfig(epochs=1, eval_every=2, dropout=0.0, min_steps=0, min_evals=1)
    a = parse_spec("linear1_2(relu(linear1_2(x,wb1)),wb2)").broadcast(2)
    together = finetune(ev, [STANDARD_SPEC.broadcast(2), a], "SST-2", seed=1, cfg=cfg)[1]
    alone = finetune(ev, [a], "SST-2", seed=1, cfg=cfg)[0]
    assert together.curve == alone.curve and together.dev == pytest.approx(alone.dev)


def test_small_tasks_still_get_the_minimum_steps_and_evaluations_and_a_convergence_check(ev):
    """One epoch is 4 steps here; the protocol still runs min_steps with min_evals evaluations, keeps
    the curve, and the longer run (scale 1.5, same seed) tells whether it converged."""
    from exprsearch.kd.final import convergence
    cfg = FinalConfig(epochs=1, eval_every=50, dropout=0.0, min_steps=24, min_evals=6)
    spec = STANDARD_SPEC.broadcast(2)
    assert final_steps(ev, "SST-2", cfg) == 24 and cfg.every(24) == 4
    runs = [finetune(ev, [spec], "SST-2", seed=s, cfg=cfg, keep_models=False)[0] for s in (10_000, 10_001)]
    for r in runs:
        assert [s for s, _ in r.curve] == [4, 8, 12, 16, 20, 24] and r.heldout_std is not None
        assert r.best_before_last == (r.best_step < 24)
        assert r.as_dict()["curve"] == r.curve and "model" not in r.as_dict()
    longer = finetune(ev, [spec], "SST-2", seed=10_000, cfg=dataclasses.replace(cfg, scale=1.5), keep_models=False)[0]
    assert longer.steps == 36 and longer.curve[-1][0] == 36
    c = convergence(runs, [longer])
    assert c["longer_seeds"] == 1 and c["longer_minus_this"] == pytest.approx(longer.heldout - runs[0].heldout)
    assert c["converged"] == (all(r.best_before_last for r in runs) and c["longer_minus_this"] <= c["noise"])


def test_the_final_protocol_needs_held_out_rows(search_ecfg):
    plain = Evaluator(dataclasses.replace(search_ecfg, heldout_rows=0, score_on="dev"), log=quiet)
    with pytest.raises(ConfigError, match="held-out"):
        finetune(plain, [STANDARD_SPEC], "SST-2", seed=0, cfg=FinalConfig(epochs=1))
    with pytest.raises(ConfigError):
        FinalConfig(epochs=0)
