"""Warm-up KD evaluator: KD loss, supernet extraction, teacher cache, Evaluator robustness.

Tiny random BERT teachers (2 layers, H = 32) with the real tokenizer, synthetic GLUE-layout data
and a few dozen steps: every run is seconds on a CPU.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import random

import pytest
import torch
from conftest_kd import (  # noqa: F401
    OTHER_SPEC,
    SPEC,
    Recorder,
    easy_glue,
    easy_teacher,
    eval_config,
    kd_cache,
    one_thread,
    quiet,
    tiny_teacher,
)

import exprsearch.kd.evaluate as evaluate_mod
import exprsearch.kd.teacher as teacher_mod
from exprsearch.compiler import StudentConfig
from exprsearch.errors import ConfigError
from exprsearch.kd.distill import KDConfig, KDLoss, SupernetStudent
from exprsearch.kd.evaluate import CandidateResult, Evaluator
from exprsearch.lang.standard import STANDARD_FFN
from exprsearch.rows.glue import read_split, task
from exprsearch.kd.teacher import (
    TeacherConfig,
    finetune_teacher,
    load_teacher,
    load_tokenizer,
    teacher_info,
)
from exprsearch.rows.tokens import Batcher, encode
from exprsearch.engine.group import train_one
from exprsearch.engine.train import CandidateFailed, TrainConfig
from exprsearch.lang.parsing import parse_spec

STANDARD_SPEC = str(STANDARD_FFN)  # the standard FFN's text

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def _student_config(teacher, **kw) -> StudentConfig:
    """The student shape the Evaluator uses: the teacher's width, heads, vocabulary and positions."""
    tc = teacher.config
    base = dict(layers=2, hidden=tc.hidden_size, heads=tc.num_attention_heads, num_labels=2, dropout=0.1,
                vocab_size=tc.vocab_size, max_position=tc.max_position_embeddings, type_vocab=tc.type_vocab_size)
    base.update(kw)
    return StudentConfig(**base)


@pytest.fixture(scope="module")
def sst2(easy_teacher, easy_glue):
    """(teacher, tokenised SST-2 train split) for direct KD-loss tests."""
    teacher = load_teacher(easy_teacher).eval()
    enc = encode(read_split(easy_glue, "SST-2", "train"), load_tokenizer(easy_teacher), 32)
    return teacher, enc


@pytest.fixture(scope="module")
def ev(easy_glue, easy_teacher, kd_cache):
    """An Evaluator on the easy SST-2 with the fine-tuned tiny teacher."""
    return Evaluator(eval_config(easy_glue, easy_teacher, kd_cache), log=quiet)


def _losses(r: CandidateResult, name: str = "SST-2") -> list[float]:
    return [v for _, v in r.curves[name]["loss"]]


# -- (a) KD loss -------------------------------------------------------------------------------

def test_kd_loss_decreases_when_training_an_extracted_student(sst2):
    teacher, enc = sst2
    torch.manual_seed(0)
    sup = SupernetStudent(_student_config(teacher), teacher)
    student = sup.extract(parse_spec(OTHER_SPEC)).train()
    kd = KDLoss(teacher, student, task("SST-2"), KDConfig())
    assert isinstance(kd.proj, torch.nn.Identity)  # same width: no projection
    curve = train_one(lambda b: kd(student, b), list(student.named_parameters()) + list(kd.named_parameters()),
                      Batcher(enc, 16, seed=0), TrainConfig(lr=1e-3, steps=60, log_every=10), CPU)
    losses = [v for _, v in curve.loss]
    assert [s for s, _ in curve.loss] == [10, 20, 30, 40, 50, 60]
    assert all(math.isfinite(v) and v > 0 for v in losses)
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < 0.985 * first, losses
    assert not any(p.requires_grad for p in teacher.parameters())  # the teacher stays frozen


def test_kd_loss_terms_on_a_student_equal_to_the_teacher(sst2):
    """A student that *is* the teacher (standard FFN with D = the teacher's width): hidden-state
    MSE 0, soft cross-entropy = the teacher's entropy, task term = the teacher's cross-entropy."""
    from exprsearch.compiler import build_student
    teacher, enc = sst2
    inter = teacher.config.intermediate_size
    student = build_student(SPEC, _student_config(teacher, base_width=inter), teacher).eval()
    batch = next(Batcher(enc, 32, seed=0).epoch(0))
    with torch.no_grad():
        t_logits = teacher(**batch.model_inputs()).logits
        hidden = KDLoss(teacher, student, task("SST-2"), KDConfig(w_logits=0, w_hidden=1))(student, batch)
        soft = KDLoss(teacher, student, task("SST-2"), KDConfig(w_logits=1, w_hidden=0))(student, batch)
        hot = KDLoss(teacher, student, task("SST-2"), KDConfig(w_logits=1, w_hidden=0, temperature=4.0))(student,
                                                                                                        batch)
        hard = KDLoss(teacher, student, task("SST-2"), KDConfig(w_logits=0, w_hidden=0, w_task=1))(student, batch)
    assert float(hidden) == pytest.approx(0.0, abs=1e-10)
    p = torch.softmax(t_logits, -1)
    assert float(soft) == pytest.approx(float(-(p * p.log()).sum(-1).mean()), rel=1e-5)
    p4 = torch.softmax(t_logits / 4, -1)
    assert float(hot) == pytest.approx(float(-(p4 * p4.log()).sum(-1).mean()), rel=1e-5)
    ce = torch.nn.functional.cross_entropy(t_logits, batch.labels.long())
    assert float(hard) == pytest.approx(float(ce), rel=1e-5)


# -- (b) a trained student beats chance ---------------------------------------------------------

def test_trained_student_beats_chance(ev):
    st = ev.state["SST-2"]
    assert st.teacher_metrics["acc"] >= 0.9  # the fine-tuned teacher learned the easy task
    r = ev.evaluate(parse_spec(SPEC))
    assert r.status == "ok" and r.reason == ""
    assert r.spec == f"[{SPEC}; {SPEC}]"
    # scored on the held-out training rows only: the dev rows are not even read
    assert set(r.metrics) == {"SST-2"} and set(r.metrics["SST-2"]) == {"heldout_acc", "heldout_acc_std", "score"}
    acc = r.metrics["SST-2"]["heldout_acc"]
    assert acc >= 0.85 and r.metrics["SST-2"]["score"] == acc
    n = len(st.heldout)  # the bootstrap std is about the binomial one
    assert n == 60  # at most a fifth of the 300 training rows
    std = r.metrics["SST-2"]["heldout_acc_std"]
    assert 0.3 * (acc * (1 - acc) / n) ** 0.5 <= std <= 3 * (acc * (1 - acc) / n) ** 0.5 + 1e-9
    assert r.score == pytest.approx(100 * acc)
    assert r.params > 0 and r.flops_per_token > 0 and r.seconds > 0
    assert r.latency_ms is not None and r.latency_ms > 0
    assert [s for s, _ in r.curves["SST-2"]["loss"]] == list(range(2, 21, 2))
    assert r.curves["SST-2"]["dev"] == [(20, acc)]
    reported = ev.evaluate(parse_spec(SPEC), report_dev=True)  # a report reads dev too; the score stays held-out
    assert set(reported.metrics["SST-2"]) == {"heldout_acc", "heldout_acc_std", "score", "acc", "acc_std"}
    assert reported.score == r.score
    other = ev.evaluate(parse_spec(OTHER_SPEC))
    assert other.status == "ok" and other.metrics["SST-2"]["heldout_acc"] >= 0.75
    assert other.params < r.params  # half-width FFNs


# -- (c) failures stay with their candidate ------------------------------------------------------

def test_nan_loss_fails_only_that_candidate(ev, monkeypatch):
    before = ev.evaluate(parse_spec(OTHER_SPEC))
    orig = KDLoss.forward
    calls = {"n": 0}

    def nan_from_step_7(self, student, batch, *shared):
        calls["n"] += 1
        loss = orig(self, student, batch, *shared)
        return loss * float("nan") if calls["n"] >= 7 else loss

    monkeypatch.setattr(KDLoss, "forward", nan_from_step_7)
    bad = ev.evaluate(parse_spec(OTHER_SPEC))
    monkeypatch.undo()
    assert bad.status == "failed"
    assert "SST-2" in bad.reason and "loss" in bad.reason and "nan" in bad.reason.lower()
    assert "step 7" in bad.reason
    assert bad.score is None and bad.metrics == {}
    after = ev.evaluate(parse_spec(OTHER_SPEC))
    assert after.status == "ok"
    assert after.metrics == before.metrics and after.curves == before.curves  # the failure left no trace


def test_infinite_loss_is_reported(ev, monkeypatch):
    orig = KDLoss.forward
    monkeypatch.setattr(KDLoss, "forward", lambda self, s, b, *t: orig(self, s, b, *t) + float("inf"))
    r = ev.evaluate(parse_spec(SPEC))
    assert r.status == "failed" and "loss is inf at step 1" in r.reason


def test_exploding_gradients_fail_the_candidate(ev, monkeypatch):
    real = TrainConfig.from_eval
    monkeypatch.setattr(TrainConfig, "from_eval",
                        classmethod(lambda cls, *a, **kw: dataclasses.replace(real(*a, **kw), explode=1e-6)))
    r = ev.evaluate(parse_spec(SPEC))
    assert r.status == "failed" and "exploding" in r.reason and "step 1" in r.reason
    monkeypatch.undo()
    assert ev.evaluate(parse_spec(SPEC)).status == "ok"


def test_train_one_raises_candidate_failed_with_the_step(sst2):
    teacher, enc = sst2
    torch.manual_seed(0)
    student = SupernetStudent(_student_config(teacher), teacher).extract(parse_spec(SPEC)).train()
    kd = KDLoss(teacher, student, task("SST-2"), KDConfig())
    with pytest.raises(CandidateFailed) as info:
        train_one(lambda b: kd(student, b), list(student.named_parameters()), Batcher(enc, 16),
                  TrainConfig(steps=5, explode=1e-9), CPU)
    assert info.value.step == 1 and "exploding gradients" in str(info.value)


RELAXED = "linear1_2(add(gelu(linear1_2(x,wb1)),relu(linear1_2(tanh(x),wb1))),wb2)"  # two wb1 linears


def test_candidate_the_supernet_cannot_hold_fails_cleanly(ev):
    r = ev.evaluate(parse_spec(RELAXED, strict=False))
    assert r.status == "failed" and r.reason.startswith("SST-2: CompileError: ") and "wb1" in r.reason
    assert r.score is None
    ok = ev.evaluate(parse_spec("linear4_1(gelu(linear4_1(x,wb1)),wb2)"), steps=4)  # the largest slice
    assert ok.status == "ok" and [s for s, _ in ok.curves["SST-2"]["loss"]] == [1, 2, 3, 4]


def test_spec_with_the_wrong_layer_count_is_a_user_error(ev):
    from exprsearch.errors import DSLError
    with pytest.raises(DSLError, match="3 layers"):
        ev.evaluate(parse_spec(f"[{SPEC}; {SPEC}; {SPEC}]"))


# -- (d) reproducibility ------------------------------------------------------------------------

def test_same_seed_same_results(ev, easy_glue, easy_teacher, kd_cache):
    log = Recorder()
    ev2 = Evaluator(eval_config(easy_glue, easy_teacher, kd_cache), log=log)
    assert not any("warming up" in m or "fine-tuning" in m for m in log.lines)  # both from the cache
    a, b = ev.evaluate(parse_spec(OTHER_SPEC)), ev2.evaluate(parse_spec(OTHER_SPEC))
    assert a.status == b.status == "ok"
    assert a.metrics == b.metrics and a.curves == b.curves and a.score == b.score
    assert len(set(_losses(a))) > 1  # a real curve, not a constant


def test_other_seed_other_curve(ev, easy_glue, easy_teacher, kd_cache):
    ev1 = Evaluator(eval_config(easy_glue, easy_teacher, kd_cache, seed=1), log=quiet)
    a, b = ev.evaluate(parse_spec(OTHER_SPEC)), ev1.evaluate(parse_spec(OTHER_SPEC))
    assert b.status == "ok" and _losses(a) != _losses(b)


# -- (e) teacher cache ---------------------------------------------------------------------------

def test_teacher_cache_hit_and_key(tiny_teacher, easy_glue, tmp_path, monkeypatch):
    cfg = TeacherConfig(epochs=0.2, batch_size=16, max_len=32)
    log = Recorder()
    torch.manual_seed(0)
    first = finetune_teacher(task("SST-2"), easy_glue, tiny_teacher, cfg, tmp_path, CPU, log=log)
    assert any("fine-tuning teacher on SST-2" in m for m in log.lines)
    assert first.parent == tmp_path / "teachers" and first.name.startswith("SST-2-")
    info = teacher_info(first)
    assert info["task"] == "SST-2" and info["steps"] == 4 and info["config"]["epochs"] == 0.2
    assert set(info["dev"]) == {"acc"}
    assert (first / "config.json").is_file() and load_teacher(first).config.num_labels == 2

    def no_training(*a, **k):
        raise AssertionError("trained although the teacher is cached")

    monkeypatch.setattr(teacher_mod, "GroupTrainer", no_training)
    assert finetune_teacher(task("sst2"), easy_glue, tiny_teacher, cfg, tmp_path, CPU, log=quiet) == first
    with pytest.raises(AssertionError, match="trained although"):  # another epoch count is another key
        finetune_teacher(task("SST-2"), easy_glue, tiny_teacher, TeacherConfig(epochs=0.3, batch_size=16,
                                                                                  max_len=32), tmp_path, CPU)
    monkeypatch.undo()
    other = finetune_teacher(task("SST-2"), easy_glue, tiny_teacher,
                             TeacherConfig(epochs=0.3, batch_size=16, max_len=32), tmp_path, CPU, log=quiet)
    assert other != first and teacher_info(other)["steps"] == 6
    assert sorted(p.name for p in (tmp_path / "teachers").iterdir()) == sorted([first.name, other.name])


def test_teacher_dir_must_be_a_model(tmp_path, easy_glue):
    with pytest.raises(ConfigError, match="config.json"):
        finetune_teacher(task("SST-2"), easy_glue, tmp_path, TeacherConfig(), tmp_path, CPU)


def test_a_non_bert_teacher_is_refused_before_its_weights_load(tmp_path, easy_glue, monkeypatch):
    gpt = tmp_path / "gpt2"
    gpt.mkdir()
    (gpt / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    (gpt / "model.safetensors").write_bytes(b"not read")

    def no_loading(*a, **k):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr("transformers.BertForSequenceClassification.from_pretrained", no_loading)
    monkeypatch.setattr("transformers.AutoModelForSequenceClassification.from_pretrained", no_loading)
    refused = r"model_type 'gpt2' is not supported; exprsearch distils from encoders of the BERT family"
    with pytest.raises(ConfigError, match=refused) as info:
        finetune_teacher(task("SST-2"), easy_glue, gpt, TeacherConfig(), tmp_path, CPU)
    assert "GPT2LMHeadModel" in str(info.value)
    with pytest.raises(ConfigError, match=refused):
        load_teacher(gpt)


@pytest.mark.parametrize("damage", [b"", b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}", None])
def test_a_damaged_teacher_file_is_a_config_error_naming_it(tiny_teacher, tmp_path, damage):
    """Issue 23: a truncated or damaged model.safetensors raised an internal SafetensorError that
    did not name the file; a damaged tokenizer.json a JSONDecodeError."""
    import shutil
    bad = shutil.copytree(tiny_teacher, tmp_path / "teacher")
    weights = bad / "model.safetensors"
    if damage is None:  # the first kilobyte of a real file
        weights.write_bytes(weights.read_bytes()[:1024])
    else:
        weights.write_bytes(damage)
    with pytest.raises(ConfigError, match=f"cannot load teacher weights {weights}: SafetensorError"):
        load_teacher(bad, 2)
    (bad / "tokenizer.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"cannot load the tokenizer of teacher {bad}"):
        load_tokenizer(bad)


def test_teacher_finetuning_is_reproducible_bug(tiny_teacher, easy_glue, tmp_path):
    cfg = TeacherConfig(epochs=0.2, batch_size=16, max_len=32, seed=0)
    heads = []
    for i in range(2):
        torch.manual_seed(100 + i)  # whatever ran before in the process
        path = finetune_teacher(task("SST-2"), easy_glue, tiny_teacher, cfg, tmp_path / f"c{i}", CPU, log=quiet)
        heads.append(load_teacher(path).classifier.weight.detach())
    assert torch.equal(heads[0], heads[1])


# -- (f) supernet extraction ------------------------------------------------------------------

EXTRACT_SPECS = [SPEC, OTHER_SPEC, "linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)",
                 "[tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2)); linear3_4(sigmoid(linear3_4(x,wb1)),wb2)]"]


def _perturbed_supernet(teacher, **kw) -> SupernetStudent:
    torch.manual_seed(0)
    sup = SupernetStudent(_student_config(teacher, **kw), teacher)
    with torch.no_grad():  # blocks that differ from each other, like after warm-up
        for p in sup.supers.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return sup


@pytest.mark.parametrize("text", EXTRACT_SPECS)
def test_extract_equals_the_supernet_sub_model(sst2, text):
    teacher, enc = sst2
    sup = _perturbed_supernet(teacher)
    spec = parse_spec(text).broadcast(2)
    batch = next(Batcher(enc, 16, shuffle=False, pad_to=1).epoch(0))
    student = sup.extract(spec).eval()
    sup.use_spec(spec)
    sup.eval()
    with torch.no_grad():
        want = sup(**batch.model_inputs(), output_hidden_states=True)
        got = student(**batch.model_inputs(), output_hidden_states=True)
    torch.testing.assert_close(got.logits, want.logits, atol=1e-6, rtol=1e-5)
    for h_got, h_want in zip(got.hidden_states, want.hidden_states):
        torch.testing.assert_close(h_got, h_want, atol=1e-5, rtol=1e-5)
    assert str(student.spec) == str(spec)
    # a copy: no storage shared with the supernet, so training the candidate leaves it alone
    ours = {p.data_ptr() for p in sup.parameters()}
    assert not any(p.data_ptr() in ours for p in student.parameters())


def test_supernet_views_share_the_supernet_weights(sst2):
    teacher, enc = sst2
    sup = _perturbed_supernet(teacher)
    sup.use_spec(parse_spec(OTHER_SPEC).broadcast(2))
    batch = next(Batcher(enc, 8, shuffle=False).epoch(0))
    sup.eval()
    with torch.no_grad():
        before = sup(**batch.model_inputs()).logits.clone()
        sup.supers[1].blocks[0].wb2.bias.add_(torch.randn(32))  # inside the slice OTHER_SPEC uses
        after = sup(**batch.model_inputs()).logits
    assert not torch.allclose(before, after)


def test_extract_with_default_student_config_bug(sst2):
    teacher, enc = sst2
    sup = _perturbed_supernet(teacher, max_position=512)  # StudentConfig's default; the teacher has 128
    spec = parse_spec(OTHER_SPEC).broadcast(2)
    batch = next(Batcher(enc, 8, shuffle=False).epoch(0))
    student = sup.extract(spec).eval()
    sup.use_spec(spec)
    sup.eval()
    with torch.no_grad():
        torch.testing.assert_close(student(**batch.model_inputs()).logits, sup(**batch.model_inputs()).logits)


# -- (g) no-KD baseline -------------------------------------------------------------------------

def test_no_kd_baseline_runs_and_differs(ev, easy_glue, easy_teacher, kd_cache):
    cfg = eval_config(easy_glue, easy_teacher, kd_cache, no_kd=True)
    k = cfg.kd()
    assert (k.w_logits, k.w_hidden, k.w_attn, k.w_task) == (0.0, 0.0, 0.0, 1.0)
    base = Evaluator(cfg, log=quiet).evaluate(parse_spec(OTHER_SPEC))
    kd = ev.evaluate(parse_spec(OTHER_SPEC))
    assert base.status == kd.status == "ok"
    assert set(base.metrics["SST-2"]) == {"heldout_acc", "heldout_acc_std", "score"}
    assert 0.0 <= base.metrics["SST-2"]["score"] <= 1.0
    assert _losses(base) != _losses(kd)
    # label cross-entropy on an easy task the inherited student already solves: far below the KD loss
    assert max(_losses(base)) < min(_losses(kd))
    supernets = sorted(p.name for p in (kd_cache / "supernets").glob("SST-2-*.pt"))
    assert len(supernets) >= 2  # the no-KD warm-up is cached apart from the KD one


# -- (h) hurdles ---------------------------------------------------------------------------------

def test_hurdle_stops_a_clearly_worse_candidate(easy_glue, easy_teacher, kd_cache, monkeypatch):
    ev_h = Evaluator(eval_config(easy_glue, easy_teacher, kd_cache, hurdles=(0.5,), steps=10), log=quiet)
    orig = KDLoss.forward

    def worse(self, student, batch, *shared):
        return orig(self, student, batch, *shared) + 100.0

    good1, good2 = ev_h.evaluate(parse_spec(SPEC)), ev_h.evaluate(parse_spec(SPEC))
    assert good1.status == good2.status == "ok"
    assert [s for s, _ in good1.curves["SST-2"]["loss"]] == [5, 10]  # logged at the hurdle
    monkeypatch.setattr(KDLoss, "forward", worse)
    early = ev_h.evaluate(parse_spec(SPEC))
    assert early.status == "ok"  # only 2 earlier candidates: no bar yet
    stopped = ev_h.evaluate(parse_spec(SPEC))  # 3 earlier candidates now
    bar = list(ev_h.state["SST-2"].losses[5])
    rescored = ev_h.evaluate_many([parse_spec(SPEC)], seed=ev_h.cfg.seed + 1)[0]
    assert rescored.status == "ok"  # a re-rank's extra seed runs to the end ...
    assert ev_h.state["SST-2"].losses[5] == bar  # ... and leaves the hurdle bars alone
    monkeypatch.undo()
    assert stopped.status == "stopped"
    assert stopped.reason.startswith("SST-2: hurdle at step 5: loss ")
    assert stopped.score is None and stopped.metrics == {}
    assert [s for s, _ in stopped.curves["SST-2"]["loss"]] == [5]
    assert _losses(stopped)[0] == pytest.approx(_losses(good1)[0] + 100.0, rel=1e-6)
    again = ev_h.evaluate(parse_spec(SPEC))  # a normal candidate still passes
    assert again.status == "ok" and again.metrics == good1.metrics


# -- (i) regression (STS-B) and several tasks ----------------------------------------------------

def test_stsb_regression_and_multi_task_score(easy_glue, tiny_teacher, kd_cache):
    torch.manual_seed(0)  # the teachers' new heads come from the global RNG
    ev2 = Evaluator(eval_config(easy_glue, tiny_teacher, kd_cache, tasks=("sts-b", "SST-2"), steps=10,
                                warmup_steps=5), log=quiet)
    assert list(ev2.state) == ["STS-B", "SST-2"]
    st = ev2.state["STS-B"]
    assert st.teacher.config.num_labels == 1 and set(st.teacher_metrics) == {"pearson", "spearman"}
    assert st.dev.labels.max() > 1.0  # real-valued targets, not class ids
    r = ev2.evaluate(parse_spec(SPEC))
    assert r.status == "ok", r.reason
    m = r.metrics["STS-B"]
    assert set(m) == {"heldout_pearson", "heldout_spearman", "heldout_pearson_std", "score"}
    assert all(math.isfinite(v) and -1.0 <= v <= 1.0 for v in m.values())
    assert m["score"] == m["heldout_pearson"]
    assert r.score == pytest.approx(100 * (m["heldout_pearson"] + r.metrics["SST-2"]["heldout_acc"]) / 2)
    assert r.curves["STS-B"]["dev"] == [(10, m["heldout_pearson"])]


# -- caches of the Evaluator -------------------------------------------------------------------

def test_supernet_cache_key_includes_lr_bug(easy_glue, easy_teacher, kd_cache, ev):
    log = Recorder()
    Evaluator(eval_config(easy_glue, easy_teacher, kd_cache, lr=3e-5), log=log)
    assert any("warming up the supernet" in m for m in log.lines)


def test_supernet_warm_up_is_cached(easy_glue, easy_teacher, kd_cache, ev):
    log = Recorder()
    Evaluator(eval_config(easy_glue, easy_teacher, kd_cache), log=log)
    assert not any("warming up" in m for m in log.lines)
    log = Recorder()
    Evaluator(eval_config(easy_glue, easy_teacher, kd_cache, warmup_steps=6), log=log)
    assert any("warming up the supernet student on SST-2: 6 KD steps" in m for m in log.lines)


def test_latency_with_a_short_position_table_bug(easy_glue, tmp_path):
    from conftest_kd import load_base_tokenizer
    from transformers import BertConfig, BertModel
    tok = load_base_tokenizer()
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(tmp_path / "t")
    tok.save_pretrained(tmp_path / "t")
    ev64 = Evaluator(eval_config(easy_glue, tmp_path / "t", tmp_path / "cache", steps=2, warmup_steps=2,
                                 teacher_epochs=0.1), log=quiet)
    r = ev64.evaluate(parse_spec(SPEC))
    assert r.status == "ok", r.reason
