"""Issue 9: exit heads, exit policies (entropy, patience, skipping gates), measurement, CLI.

A 4-layer student is trained by warm-up KD on the easy synthetic SST-2 (tiny random teacher),
then wrapped with exit heads; the checks are exact: extreme settings reproduce the static models,
batched and one-example inference agree, hard gates train as they infer.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest_kd import quiet
from conftest_search import easy_glue, kd_cache, one_thread, search_ecfg, tiny_teacher  # noqa: F401

from exprsearch.compiler.exits import (
    EarlyExitBert,
    EntropyExit,
    GateExit,
    PatienceExit,
    normalized_entropy,
)
from exprsearch.errors import ConfigError
from exprsearch.kd.exits import (
    ExitConfig,
    evaluate_policy,
    run_exits,
    settings,
    sweep,
    train_exits,
    train_gates,
)
from exprsearch.rows.glue import compute_metrics
from exprsearch.rows.tokens import Batcher
from exprsearch.engine.train import predict
from exprsearch.lang.parsing import parse_spec

pytestmark = pytest.mark.usefixtures("one_thread")
STD = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"
XCFG = ExitConfig(exit_steps=30, gate_steps=20, timing_rows=16)


@pytest.fixture(scope="module")
def trained(search_ecfg, tmp_path_factory):  # noqa: F811
    """(EarlyExitBert with trained exit heads, task state, static dev metrics, exit-training curve)."""
    from exprsearch.kd.evaluate import Evaluator
    ecfg = dataclasses.replace(search_ecfg, layers=4, steps=20, cache_dir=str(tmp_path_factory.mktemp("exits")))
    ev = Evaluator(ecfg, log=quiet)
    student, st, static = ev.train_student(parse_spec(STD))
    model = EarlyExitBert(student)
    torch.manual_seed(0)
    curve = train_exits(model, st.train, st.task, ev.device, XCFG, batch_size=16, max_len=32)
    return model, st, static, curve, ev


def _batch(st, n: int = 24):
    b = next(iter(Batcher(st.dev.subset(n), n, shuffle=False).epoch(0)))
    return b.model_inputs()


def test_exit_heads_train_and_the_last_exit_is_the_static_model(trained):
    model, st, static, curve, ev = trained
    assert len(model.exits) == 3 and len(model.layers) == 4
    assert curve[-1][1] < curve[0][1], curve  # the self-distillation loss went down
    inputs = _batch(st)
    logits, frac = model.eval().all_logits(inputs)
    with torch.no_grad():
        torch.testing.assert_close(logits[-1], model.student(**inputs).logits)
    assert float(frac.mean()) == 1.0
    for p in model.student.parameters():  # two-stage: the backbone was frozen, then released
        assert p.requires_grad


def test_extreme_settings_equal_the_static_models(trained):
    model, st, static, _, ev = trained
    dev, t = st.dev, st.task
    full_preds = predict(model.student, dev, t, ev.device, bf16=False)
    for policy in (EntropyExit(0.0), PatienceExit(3)):
        metrics, layers, preds = evaluate_policy(model, dev, t, policy, ev.device)
        assert layers == 4.0
        dev_static = {k: v for k, v in static.items() if not k.startswith("heldout_") and k != "score"}
        assert torch.equal(preds, full_preds) and metrics == dev_static
    # leave after the first layer: the static model "layer 0 + exit head 0"
    first = []
    for b in Batcher(dev, 64, shuffle=False).epoch(0):
        with torch.no_grad():
            first.append((b.index, model.all_logits(b.model_inputs())[0][0].argmax(-1).float()))
    first_preds = torch.empty(len(dev))
    for idx, p in first:
        first_preds[idx] = p
    for policy in (EntropyExit(1.01), PatienceExit(0)):
        metrics, layers, preds = evaluate_policy(model, dev, t, policy, ev.device)
        assert layers == 1.0
        assert torch.equal(preds, first_preds)
        assert metrics == compute_metrics(t, dev.labels.tolist(), first_preds.tolist())


def _one_by_one(model, inputs, policy):
    outs, used = [], []
    for i in range(inputs["input_ids"].shape[0]):
        lo, n = model.infer({k: v[i:i + 1] for k, v in inputs.items()}, policy)
        outs.append(lo)
        used.append(n)
    return torch.cat(outs), torch.cat(used)


@pytest.mark.parametrize("policy", [EntropyExit(0.3), EntropyExit(0.6), PatienceExit(1), GateExit(0.0), GateExit(0.5)])
def test_batched_and_per_example_inference_agree(trained, policy):
    from exprsearch.compiler.exits import _run_layer
    model, st, *_ = trained
    model.eval()
    inputs = _batch(st)
    with torch.no_grad():  # gate 0 skips layer 1 for everyone; gate 1 skips layer 2 for half the batch
        model.gates[0].lin.bias.fill_(5.0)
        torch.manual_seed(0)
        model.gates[1].lin.weight.normal_(0, 1.0)
        h, mask = model._embed(inputs)
        z = model.gates[1].lin(_run_layer(model.layers[0], h, mask)[:, 0]).squeeze(-1)
        model.gates[1].lin.bias.sub_(z.median() + 1e-3)
    logits, used = model.infer(inputs, policy)
    logits1, used1 = _one_by_one(model, inputs, policy)
    assert torch.equal(used, used1)
    assert torch.equal(logits.argmax(-1), logits1.argmax(-1))
    torch.testing.assert_close(logits, logits1, atol=1e-4, rtol=1e-4)
    if isinstance(policy, GateExit):
        assert bool((used <= 3).all())  # layer 1 is skipped for everyone
        assert len(set(used.tolist())) > 1 or policy.threshold > 0  # layer 2: some skip, some run
    with torch.no_grad():
        model.gates[0].lin.bias.fill_(-2.0)
        model.gates[1].lin.weight.zero_()
        model.gates[1].lin.bias.fill_(-2.0)


def test_hard_gates_train_as_they_infer(trained):
    model, st, *_ = trained
    g = EarlyExitBert(model.student)
    g.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    cfg = dataclasses.replace(XCFG, gate_cost=5.0, gate_lr=0.2)  # a high compute price: the gates learn to skip
    curve = train_gates(g, st.train, st.task, torch.device("cpu"), cfg, batch_size=16, max_len=32)
    assert curve and g.gate_mode == "hard"
    inputs = _batch(st)
    with torch.no_grad():
        train_view, frac = g.eval().all_logits(inputs)
        logits, used = g.infer(inputs, GateExit(0.0))
    torch.testing.assert_close(logits, train_view[-1].float(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(used.float() / 4, frac.float())
    assert float(frac.mean()) < 1.0  # some layers are skipped
    g.gate_mode = "soft"  # soft gates are differentiable
    g.train()
    lo, ran = g.all_logits(inputs)
    (lo[-1].sum() + ran.sum()).backward()
    assert g.gates[0].lin.weight.grad is not None


def test_policies_reject_bad_settings_and_regression_uses_patience():
    with pytest.raises(ValueError, match="entropy"):  # the shipped model's code: transformers' error type
        EntropyExit(0.5).leave(0, torch.zeros(3, 1), {})
    p, state = PatienceExit(1, tolerance=0.1), {}
    assert not p.leave(0, torch.tensor([[0.5], [0.5]]), state).any()
    assert p.leave(1, torch.tensor([[0.55], [0.9]]), state).tolist() == [True, False]
    with pytest.raises(ConfigError, match="policy"):
        ExitConfig(policy="hash")
    assert normalized_entropy(torch.zeros(2, 3)).tolist() == pytest.approx([1.0, 1.0])
    assert [s.patience for s in settings("patience", 4)] == [3, 2, 1, 0]


def test_sweep_rows_cover_the_trade_off(trained):
    model, st, static, _, ev = trained
    rows = sweep(model, st.dev.subset(32), st.task, "entropy", ev.device, XCFG)
    assert [r["setting"]["threshold"] for r in rows][0] == 0.0
    assert rows[0]["avg_layers"] == 4.0 and rows[-1]["avg_layers"] == 1.0
    assert all(r["speedup_b1"] > 0 and r["speedup_b32"] > 0 for r in rows)
    layers = [r["avg_layers"] for r in rows]
    assert layers == sorted(layers, reverse=True)  # a higher threshold never runs more layers


def test_exits_cli_stores_and_reports(tmp_path, search_ecfg, capsys):  # noqa: F811
    from exprsearch.cli.main import main
    from exprsearch.search.report import write_report
    from exprsearch.search.store import Store
    db = tmp_path / "runs.db"
    e = search_ecfg
    args = ["exits", STD, "--task", "SST-2", "--policy", "patience", "--patience", "2", "--store", str(db),
            "--data-dir", e.data_dir, "--teacher", e.teacher, "--cache-dir", e.cache_dir, "--layers", "4",
            "--steps", "5", "--warmup-steps", "5", "--max-train", "64", "--max-dev", "32", "--max-len", "32",
            "--batch-size", "16", "--teacher-epochs", "0.5", "--exit-steps", "5", "--timing-rows", "8",
            "--device", "cpu"]
    assert main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chosen"]["patience"]["setting"]["patience"] == 2
    assert [r["setting"]["patience"] for r in out["rows"]["patience"]] == [3, 2, 1, 0]
    store = Store(db)
    stored = store.exits(out["run_id"])
    assert len(stored) == 1 and stored[0]["policy"] == "patience" and stored[0]["task"] == "SST-2"
    page = write_report(store, out["run_id"], tmp_path / "r.html").read_text()
    assert '<h2 id="exits">' in page and "patience" in page
    assert main(args) == 0
    assert "avg layers" in capsys.readouterr().out
    assert main(["exits", STD, "--task", "SST-2", "--policy", "hash", "--store", str(db)]) == 2
    assert main(["exits", STD, "--task", "SST-2,RTE", "--store", str(db)]) == 2
    assert "one task" in capsys.readouterr().err


def test_repl_eval_with_an_exit_policy(search_ecfg, monkeypatch):  # noqa: F811
    import io

    from exprsearch.cli.repl import Repl
    from exprsearch.search.presets import EVAL_PRESETS
    e = search_ecfg
    tiny = dict(data_dir=e.data_dir, teacher=e.teacher, cache_dir=e.cache_dir, layers=3, steps=5, warmup_steps=5,
                max_train=64, max_dev=32, max_len=32, batch_size=16, teacher_epochs=0.5, device="cpu", latency_batch=0)
    monkeypatch.setitem(EVAL_PRESETS, "cpu", tiny)
    out = io.StringIO()
    Repl(out=out).run_lines([STD, ":eval SST-2 5 exit=patience:1", ":eval SST-2 5 exit=warp:1"])
    text = out.getvalue()
    assert "patience {'patience': 1, 'tolerance': 0.1}: score" in text and "layers on average" in text
    assert "unknown exit policy 'warp'" in text


def test_regression_tasks_use_patience_and_gates(search_ecfg):  # noqa: F811
    ecfg = dataclasses.replace(search_ecfg, layers=3, steps=5)
    with pytest.raises(ConfigError, match="regression"):  # refused before any training
        run_exits(parse_spec(STD), "STS-B", ecfg, ExitConfig(policy="entropy"))
    out = run_exits(parse_spec(STD), "STS-B", ecfg, dataclasses.replace(XCFG, exit_steps=5, gate_steps=4, timing_rows=0),
                    policies=("entropy", "patience", "gate"))
    assert set(out["rows"]) == {"patience", "gate"}
    assert [r["setting"]["patience"] for r in out["rows"]["patience"]] == [2, 1, 0]
    from exprsearch.kd.exits import GATE_COSTS
    assert [r["setting"]["gate_cost"] for r in out["rows"]["gate"]] == list(GATE_COSTS)
    assert {r["setting"]["threshold"] for r in out["rows"]["gate"]} == {0.0}
    assert "pearson" in out["static"] and "pearson" in out["chosen"]["patience"]["metrics"]


@pytest.mark.parametrize("schedule, backbone_moves", [("two-stage", False), ("joint", True)])
def test_schedules_freeze_or_train_the_backbone(trained, schedule, backbone_moves):
    import copy
    model, st, *_, ev = trained
    m = EarlyExitBert(copy.deepcopy(model.student))
    before = [p.detach().clone() for p in m.student.parameters()]
    heads = [p.detach().clone() for p in m.exits.parameters()]
    train_exits(m, st.train, st.task, ev.device, dataclasses.replace(XCFG, schedule=schedule, exit_steps=3),
                batch_size=16, max_len=32)
    moved = any(not torch.equal(a, b) for a, b in zip(before, m.student.parameters()))
    assert moved is backbone_moves
    assert any(not torch.equal(a, b) for a, b in zip(heads, m.exits.parameters()))


def test_joint_schedule_trains_the_backbone_at_its_own_rate(trained, monkeypatch):
    import copy

    import exprsearch.kd.exits as exits_mod
    model, st, *_, ev = trained
    m = EarlyExitBert(copy.deepcopy(model.student))
    seen = {}
    real = exits_mod.train_one

    def spy(loss, params, batches, tc, device, **kw):
        seen["rates"] = {n: kw["lr_of"](n) for n, _ in params} if kw.get("lr_of") else None
        return real(loss, params, batches, tc, device, **kw)

    monkeypatch.setattr(exits_mod, "train_one", spy)
    xcfg = dataclasses.replace(XCFG, schedule="joint", exit_steps=2, exit_lr=1e-3, backbone_lr=2e-5)
    train_exits(m, st.train, st.task, ev.device, xcfg, batch_size=16, max_len=32)
    rates = seen["rates"]
    assert {r for n, r in rates.items() if n.startswith("exits.")} == {1e-3}
    assert {r for n, r in rates.items() if n.startswith("student.")} == {2e-5}
    assert not any(n.startswith("gates.") for n in rates)
    train_exits(m, st.train, st.task, ev.device, dataclasses.replace(xcfg, schedule="two-stage"),
                batch_size=16, max_len=32)
    assert seen["rates"] is None  # two-stage: the heads alone, at exit_lr


def test_exit_config_refuses_a_non_positive_rate():
    with pytest.raises(ConfigError, match="backbone_lr"):
        ExitConfig(backbone_lr=0)
