"""a spec + a prepared evaluator --> a shipped student per task: the ``exprsearch distill`` pipeline.

Input: an ``Evaluator`` whose protocol holds training rows out (teachers and warm supernets
prepared), the parsed spec, a ``FinalConfig``, the number of seeds and the output directory.
Output: per task a Hugging Face directory (``hf.py``) with ``model.onnx`` and a model card, and a
summary dict: the spec's dev scores over seeds beside the width-matched standard-FFN student's
(the run's baseline, or the widest standard FFN with at most the spec's FFN parameters; trained
in the same group with the same seeds, both arms' FFN parameters side by side) and the teacher's,
the seed kept (best on the held-out training rows, never on dev), params (total / non-embedding /
FFN), FLOPs per token, latency (timed beside the standard-FFN student), each seed's held-out curve
and best step, and whether the student and the teacher beat a constant predictor on the same dev
rows (``trivial.py``: the rows, the warnings, also logged).  The seeds are fresh
(``kd.final.fresh_seeds``): none the search or its re-ranks trained with.
Invariants: a directory appears whole or not at all (written aside, then renamed; an existing
one is replaced only with ``overwrite``); the dev set chooses nothing.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch

from exprsearch.compiler.execute import to_device
from exprsearch.compiler.student import ExprBertForSequenceClassification
from exprsearch.errors import ConfigError, ExprSearchError
from exprsearch.kd.final import FinalConfig, FinalRun, finetune, fresh_seeds
from exprsearch.kd.teacher import hub_id
from exprsearch.lang.expr import ModelSpec
from exprsearch.search.pricing import Price, matched_standard, price_spec
from exprsearch.search.stats import mean_std

from .card import model_card
from .hf import write_hf_dir
from .trivial import check, data_line

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from exprsearch.kd.evaluate import Evaluator

__all__ = ["distill", "model_facts", "check_onnx"]


def model_facts(model: ExprBertForSequenceClassification, seq_len: int = 128) -> dict[str, Any]:
    """Parameters (total / non-embedding / FFN) and matmul FLOPs per token of a student."""
    from exprsearch.compiler import student_cost
    cost = student_cost(model, seq_len)
    embed = sum(p.numel() for p in model.bert.embeddings.parameters())
    return {"params": cost["params"], "nonembed_params": cost["params"] - embed, "ffn_params": cost["ffn_params"],
            "flops_per_token": cost["mm_flops_per_token"], "seq_len": seq_len}


def _latency(model: PreTrainedModel, reference: PreTrainedModel, device: torch.device, batch: int, seq: int = 128
             ) -> dict[str, Any]:
    """One forward of ``batch`` sequences of ``seq`` tokens, timed beside ``reference`` (the
    standard-FFN student): median and spread over 7 repeats, and the ratio (``timing.Latency``)."""
    from exprsearch.compiler.timing import paired_latency
    cpu = device.type == "cpu"
    return paired_latency(to_device(model, device), to_device(reference, device), device, batch, seq, repeats=7,
                          warmup=2 if cpu else 5, iters=3 if cpu else 20).as_dict()


def check_onnx(model: ExprBertForSequenceClassification, path: Path) -> dict[str, Any]:
    """Export ``model`` to ``path`` (inputs input_ids, attention_mask, token_type_ids; dynamic
    batch and length) and compare onnxruntime's logits with PyTorch's on two shapes."""
    from exprsearch.compiler.export import export_onnx, onnx_inputs
    try:
        import onnxruntime as ort
    except ImportError:
        return {"onnx": None, "why": "onnxruntime is not installed: pip install 'exprsearch[onnx]'"}
    cpu = to_device(model, "cpu").eval()
    export_onnx(cpu, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names, vocab = onnx_inputs(cpu), cpu.config.vocab_size
    worst = 0.0
    for batch, seq in ((1, 9), (3, 37)):
        ids = torch.randint(min(1000, vocab // 4), vocab, (batch, seq))  # past the special tokens
        mask = torch.ones_like(ids)
        mask[-1, seq // 2:] = 0
        types = torch.zeros_like(ids)
        types[:, seq // 3:] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        feed = {k: v for k, v in feed.items() if k in names}
        with torch.no_grad():
            want = cpu(**feed).logits.numpy()
        got = sess.run(["logits"], {k: v.numpy() for k, v in feed.items()})[0]
        worst = max(worst, float(abs(got - want).max()))
    if worst > 1e-4:
        raise ExprSearchError(f"the ONNX export of {path.parent.name} differs from PyTorch by {worst:.2e} (> 1e-4)")
    return {"onnx": path.name, "max_abs_diff": worst, "onnx_inputs": names}


def _summary(runs: list[FinalRun], main: str, spec: ModelSpec, ffn_params: int) -> dict[str, Any]:
    ok = [r for r in runs if r.status == "ok"]
    vals = [100 * r.dev[main] for r in ok]
    mean, std = mean_std(vals) if vals else (None, None)
    return {"spec": str(spec), "ffn_params": ffn_params, "mean": mean, "std": std,
            "seeds": [r.as_dict() for r in runs]}


def _replace_dir(tmp: Path, out: Path, overwrite: bool) -> None:
    if out.exists():
        if not overwrite:
            raise ConfigError(f"{out} exists: choose another -o, or pass --overwrite")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _heldout(r: FinalRun) -> float:
    """The held-out score a run was chosen by (an ok run has one)."""
    return float("-inf") if r.heldout is None else r.heldout


def distill(ev: Evaluator, spec: ModelSpec, out: Path, fcfg: FinalConfig, seeds: int = 1, *, command: str = "",
            source: str = "", overwrite: bool = False, log: Callable[[str], None] = print,
            baseline: ModelSpec | None = None, used_seeds: Iterable[int] = ()) -> list[dict[str, Any]]:
    """Distil ``spec`` on every task of ``ev`` into ``out`` (``out/<task>`` for several tasks),
    beside ``baseline`` (default: the widest standard FFN with at most the spec's FFN parameters),
    with fresh seeds (none of ``used_seeds``)."""
    if seeds < 1:
        raise ConfigError("--seeds must be at least 1")
    spec = spec.broadcast(ev.cfg.layers) if len(spec) == 1 else spec
    first = ev.state[next(iter(ev.state))]
    from exprsearch.compiler.teachers import teacher_shape
    tc, labels_n = teacher_shape(first.teacher.config.to_dict()), first.task.num_labels

    def price(s: ModelSpec) -> Price:
        return price_spec(s, ev.cfg, tc, labels_n)

    standard = (baseline or matched_standard(spec, price, ev.cfg.layers)).broadcast(ev.cfg.layers)
    with_std = standard != spec
    ffn = {"student": price(spec).ffn_params, "standard": price(standard).ffn_params}
    seed_list = fresh_seeds(seeds, used_seeds)
    log(f"final protocol seeds {seed_list}; the student ({ffn['student']:,} FFN parameters) beside the standard "
        f"FFN {standard.layers[0]} ({ffn['standard']:,} FFN parameters)")
    names = list(ev.state)
    out = Path(out)
    results = []
    for name in names:
        st = ev.state[name]
        target = out / name if len(names) > 1 else out
        mine: list[FinalRun] = []
        theirs: list[FinalRun] = []
        t0 = time.perf_counter()
        for seed in seed_list:
            runs = finetune(ev, [spec, standard] if with_std else [spec], name, seed, fcfg, log=log)
            mine.append(runs[0])
            if with_std:
                theirs.append(runs[1])
                runs[1].model = None
            best = max((r for r in mine if r.status == "ok"), key=_heldout, default=None)
            for r in mine:  # keep only the best model so far
                if r is not best:
                    r.model = None
            held = "-" if runs[0].heldout is None else f"{100 * runs[0].heldout:.2f}"
            log(f"  {name} seed {seed}: {runs[0].status} dev {st.task.main} "
                f"{100 * runs[0].dev.get(st.task.main, float('nan')):.2f} (held-out {held}, "
                f"best step {runs[0].best_step})")
        best = max((r for r in mine if r.status == "ok"), key=_heldout, default=None)
        if best is None:
            raise ExprSearchError(f"{name}: every seed failed ({mine[0].reason})")
        model = best.model
        assert model is not None  # the best run kept its model
        guess = check(st, model, ev.device, best.seed)  # the same dev rows: better than a constant?
        log(f"  {name}: {data_line(guess, markdown=False)}")
        for w in guess["warnings"]:
            log(f"  warning: {w}")
        facts = model_facts(model, min(ev.cfg.max_len, 128))
        reference = st.supernet.extract(standard)  # timed alongside: the load moves both alike
        latency = {"cpu_batch1": _latency(model, reference, torch.device("cpu"), 1)}
        if ev.device.type == "cuda":
            latency["gpu_batch32"] = _latency(model, reference, ev.device, 32)
        latency.update({f"{k}_ms": v["ms"] for k, v in list(latency.items())})  # the medians, as before
        labels = list(st.task.labels) if st.task.labels is not None else None
        info = {"task": name, "spec": str(spec), "chosen_seed": best.seed, "main_metric": st.task.main,
                "student": _summary(mine, st.task.main, spec, ffn["student"]),
                "standard": _summary(theirs, st.task.main, standard, ffn["standard"]) if with_std else None,
                "teacher": {k: 100 * v for k, v in st.teacher_metrics.items()}, "base_model": hub_id(ev.teacher_dir), "protocol": {
                    "epochs": fcfg.epochs_for(name), "eval_every": fcfg.every(best.steps), "dropout": fcfg.dropout,
                    "heldout_rows": len(st.heldout) if st.heldout is not None else 0, "lr": ev.cfg.lr,
                    "batch_size": ev.cfg.batch_size,
                    "steps": best.steps, "seeds": seed_list,
                    "best_before_last": all(r.best_before_last for r in mine if r.status == "ok")}, **facts,
                "latency": latency, "check": guess, "command": command, "source": source,
                "seconds": time.perf_counter() - t0, "device": str(ev.device)}
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            write_hf_dir(to_device(model, "cpu"), tmp, ev.teacher_dir, labels)
            info.update(check_onnx(model, tmp / "model.onnx"))
            (tmp / "README.md").write_text(model_card(info), encoding="utf-8")
            target.parent.mkdir(parents=True, exist_ok=True)
            _replace_dir(tmp, target, overwrite)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        info["dir"] = str(target)
        log(f"wrote {target}")
        results.append(info)
    return results
