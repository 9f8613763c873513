"""Candidates trained in lock-step (exprsearch/engine/group.py) and the Evaluator's groups.

A group must give each member exactly what training it alone gives (no cross-talk through the
summed backward, the shared optimizer or the shared teacher pass), fail only the member that
breaks, and the Evaluator's ``evaluate_many`` must score each candidate as ``evaluate`` does.
"""
from __future__ import annotations

import copy

import pytest
import torch
from conftest_kd import (  # noqa: F401
    OTHER_SPEC,
    SPEC,
    easy_glue,
    easy_teacher,
    eval_config,
    kd_cache,
    one_thread,
    quiet,
    tiny_teacher,
)
from torch import nn

from exprsearch.errors import DeviceError
from exprsearch.kd.distill import KDLoss
from exprsearch.kd.evaluate import Evaluator
from exprsearch.engine.group import GroupTrainer, Member
from exprsearch.rows.tokens import Batcher, Encoded
from exprsearch.lang.parsing import parse_spec
from exprsearch.engine.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n: int = 96, width: int = 12, seed: int = 0) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, width + 1, (n,), generator=g)
    ids = torch.randint(1, 60, (n, width), generator=g) * (torch.arange(width)[None, :] < lengths[:, None])
    return Encoded(ids, torch.zeros(n, width, dtype=torch.long), lengths, torch.randint(0, 2, (n,), generator=g).float())


class Bag(nn.Module):
    """A tiny deterministic classifier over token ids (no dropout)."""

    def __init__(self, seed: int, width: int = 8) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(60, width)
        self.out = nn.Linear(width, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(ids).mean(1))


def _ce(model: nn.Module, batch, shared) -> torch.Tensor:
    logits = model(batch.input_ids)
    if shared is not None:  # a soft target shared by every member, computed once per batch
        return -(shared.softmax(-1) * logits.log_softmax(-1)).sum(-1).mean()
    return nn.functional.cross_entropy(logits, batch.labels.long())


CFG = TrainConfig(lr=5e-2, steps=24, log_every=6)


def _train(models: list[nn.Module], shared=None, cfg: TrainConfig = CFG, loss=_ce):
    members = [Member(m, loss) for m in models]
    return GroupTrainer(members, cfg, shared=shared).train(Batcher(_data(), 16, seed=3, fill=True))


def test_a_group_trains_each_member_exactly_as_alone():
    models = [Bag(s) for s in range(3)]
    alone = [copy.deepcopy(m) for m in models]
    group_out = _train(models)
    solo_out = [_train([m])[0] for m in alone]
    for g, s, mg, ms in zip(group_out, solo_out, models, alone):
        assert g.failed is None and len(g.curve.loss) == 4
        assert [x for _, x in g.curve.loss] == pytest.approx([x for _, x in s.curve.loss], rel=1e-5)
        for pg, ps in zip(mg.parameters(), ms.parameters()):
            assert torch.allclose(pg, ps, atol=1e-6)
    assert group_out[0].curve.loss[-1][1] < group_out[0].curve.loss[0][1]  # it learns


def test_shared_is_computed_once_per_step_and_reaches_every_member():
    teacher = Bag(99)
    calls = []

    def shared(batch):
        calls.append(batch.input_ids.shape[0])
        return teacher(batch.input_ids)

    outs = _train([Bag(0), Bag(1)], shared=shared)
    assert len(calls) == CFG.steps and all(c == 16 for c in calls)  # filled batches: 16 rows every step
    assert all(o.failed is None for o in outs)


def test_a_nan_member_fails_alone_with_its_step():
    models = [Bag(0), Bag(1), Bag(2)]
    reference = [copy.deepcopy(models[0]), copy.deepcopy(models[2])]
    calls = {"n": 0}

    def nan_for_member_1(model, batch, shared):
        loss = _ce(model, batch, shared)
        if model is models[1]:
            calls["n"] += 1
            if calls["n"] >= 5:
                return loss * float("nan")
        return loss

    outs = _train(models, loss=nan_for_member_1)
    assert outs[1].failed is not None and "loss is nan at step 5" in str(outs[1].failed)
    assert outs[0].failed is None and outs[2].failed is None
    ref = _train(reference)
    assert [x for _, x in outs[0].curve.loss] == pytest.approx([x for _, x in ref[0].curve.loss], rel=1e-5)
    assert [x for _, x in outs[2].curve.loss] == pytest.approx([x for _, x in ref[1].curve.loss], rel=1e-5)


def test_exploding_member_and_early_stop_when_none_runs():
    cfg = TrainConfig(lr=5e-2, steps=24, log_every=6, explode=1e-9)
    outs = _train([Bag(0), Bag(1)], cfg=cfg)
    assert all(o.failed is not None and "exploding" in str(o.failed) and "step 1" in str(o.failed) for o in outs)
    assert all(o.curve.loss == [] for o in outs)  # stopped at once: nothing left to train


def test_on_log_stops_a_member_and_keeps_its_curve_up_to_there():
    def stop_member_0(step, means):
        assert set(means) <= {0, 1}
        return {0: f"stopped at {step}"} if step == 12 else {}

    outs = _train([Bag(0), Bag(1)], cfg=TrainConfig(lr=5e-2, steps=24, log_every=6))
    stopped = GroupTrainer([Member(Bag(0), _ce), Member(Bag(1), _ce)], TrainConfig(lr=5e-2, steps=24, log_every=6)
                           ).train(Batcher(_data(), 16, seed=3, fill=True), on_log=stop_member_0)
    assert stopped[0].stopped == "stopped at 12" and [s for s, _ in stopped[0].curve.loss] == [6, 12]
    assert stopped[1].running and [s for s, _ in stopped[1].curve.loss] == [6, 12, 18, 24]
    assert [x for _, x in stopped[1].curve.loss] == pytest.approx([x for _, x in outs[1].curve.loss])


def test_static_batches_have_full_rows_and_bucket_widths():
    enc = _data(n=50, width=12)
    b = Batcher(enc, 16, seed=0, fill=True, widths=(4, 8))
    shapes = {tuple(x.input_ids.shape) for e in range(3) for x in b.epoch(e)}
    assert shapes <= {(16, 4), (16, 8), (16, 12)}  # the split's own width closes the list
    for x in b.epoch(0):
        assert (x.input_ids != 0).sum(1).max() <= x.input_ids.shape[1]
        assert len(set(x.index.tolist())) == 16 or len(enc) < 16  # a topped-up batch repeats no row


# -- the Evaluator --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ev_group(easy_glue, easy_teacher, kd_cache):
    return Evaluator(eval_config(easy_glue, easy_teacher, kd_cache, group=3), log=quiet)


def test_evaluate_many_scores_each_candidate_like_evaluate(ev_group, monkeypatch):
    # dropout draws from one generator in a group: switch it off to compare group vs alone exactly
    specs = [SPEC, OTHER_SPEC, "linear1_2(gelu(linear1_2(x,wb1)),wb2)"]
    orig = Evaluator._student

    def no_dropout(self, st, spec):
        student = orig(self, st, spec)
        for m in student.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        return student

    monkeypatch.setattr(Evaluator, "_student", no_dropout)
    many = ev_group.evaluate_many([parse_spec(s) for s in specs])
    alone = [ev_group.evaluate(parse_spec(s)) for s in specs]
    for m, a in zip(many, alone):
        assert m.status == a.status == "ok"
        assert m.params == a.params and m.spec == a.spec
        assert [x for _, x in m.curves["SST-2"]["loss"]] == pytest.approx(
            [x for _, x in a.curves["SST-2"]["loss"]], rel=1e-4)
    assert many[0].params > many[1].params  # half-width FFNs: the results are not mixed up


def test_a_candidate_that_raises_fails_alone_in_its_group(ev_group, monkeypatch):
    orig = KDLoss.forward

    def broken_for_relu(self, student, batch, *shared):
        if any("relu" in f["expression"] for f in student.config.ffn_layers):
            raise RuntimeError("shape mismatch in this candidate")
        return orig(self, student, batch, *shared)

    monkeypatch.setattr(KDLoss, "forward", broken_for_relu)
    res = ev_group.evaluate_many([parse_spec(s) for s in (SPEC, OTHER_SPEC, "linear1_2(gelu(linear1_2(x,wb1)),wb2)")])
    assert [r.status for r in res] == ["ok", "failed", "ok"]
    assert "shape mismatch" in res[1].reason and res[1].reason.startswith("SST-2: RuntimeError")
    assert res[0].score is not None and res[1].score is None


def test_an_out_of_memory_group_is_freed_then_halved_until_it_fits(ev_group, monkeypatch):
    import gc
    import weakref

    import exprsearch.kd.evaluate as evaluate_mod
    attempts: list[list] = []
    orig_init = evaluate_mod.GroupTrainer.__init__

    def watching_init(self, members, *a, **kw):
        if attempts:  # the retry starts only after the failed group's models are gone
            gc.collect()
            assert all(ref() is None for ref in attempts[0]), "the failed group's models are still alive"
        attempts.append([weakref.ref(m.model) for m in members])
        orig_init(self, members, *a, **kw)

    orig_forward = KDLoss.forward

    def oom_in_a_big_group(self, student, batch, *shared):
        if len(attempts[-1]) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return orig_forward(self, student, batch, *shared)

    monkeypatch.setattr(evaluate_mod.GroupTrainer, "__init__", watching_init)
    monkeypatch.setattr(KDLoss, "forward", oom_in_a_big_group)
    monkeypatch.setattr(ev_group, "_group_size", 3)
    res = ev_group.evaluate_many([parse_spec(s) for s in (SPEC, OTHER_SPEC, "linear1_2(gelu(linear1_2(x,wb1)),wb2)")])
    assert [r.status for r in res] == ["ok", "ok", "ok"]
    assert [len(a) for a in attempts] == [3, 2, 1, 1, 1]  # 3 -> halves of 2 and 1 -> 2 -> 1 + 1
    assert ev_group.group == 1  # and the evaluator keeps the size that fits


def test_a_cuda_error_that_breaks_the_device_stops_the_run(ev_group, monkeypatch):
    def broken_device(self, student, batch, *shared):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(KDLoss, "forward", broken_device)
    with pytest.raises(DeviceError, match="illegal memory access"):
        ev_group.evaluate_many([parse_spec(SPEC)])
