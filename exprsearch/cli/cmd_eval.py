"""``exprsearch eval`` and ``exprsearch teacher``: KD-evaluate a candidate; fine-tune teachers."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .main import command, emit
from .options import add_dataclass_args, from_args, to_dict
from exprsearch.lang.display import table
from exprsearch.errors import ConfigError, ExprSearchError

PRESETS: dict[str, dict] = {
    # a newcomer's first run: the bundled GLUE slices, a few steps, minutes on 2 CPU cores
    "cpu": dict(max_train=200, max_dev=100, max_len=64, steps=30, warmup_steps=30, teacher_epochs=1,
                batch_size=16, layers=6),
    # one H100: full data, bucketed batches (measured in BENCHMARKS.md)
    "gpu": dict(steps=600, warmup_steps=1500, teacher_epochs=3, batch_size=32),
}


def _spec_arg(text: str) -> str:
    p = Path(text)
    if len(text) < 4096 and p.is_file():
        try:
            return p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ExprSearchError(f"cannot read {p}: {err}") from None
    return text


def _eval_config(ns: argparse.Namespace):
    from exprsearch.kd.evaluate import EvalConfig
    preset = PRESETS.get(ns.preset, {}) if ns.preset else {}
    given = {k: v for k, v in preset.items() if not hasattr(ns, k)}
    tasks = tuple(t.strip() for t in ns.task.split(",") if t.strip()) if ns.task else None
    return from_args(EvalConfig, ns, **given, **({"tasks": tasks} if tasks else {}))


def _common(p: argparse.ArgumentParser) -> None:
    from exprsearch.kd.evaluate import EvalConfig
    p.add_argument("--task", help="GLUE task(s), comma-separated, e.g. RTE or RTE,MRPC")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a bundle of settings (explicit options win)")
    add_dataclass_args(p, EvalConfig, skip=("tasks",))


def _eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="an FFN expression, '[e1; e2; ...]', or a file with one expression per layer")
    p.add_argument("--baseline", action="store_true",
                   help="also train the standard-FFN student the same way and compare")
    _common(p)


def _log(ns: argparse.Namespace):
    return (lambda m: print(m, file=sys.stderr)) if not getattr(ns, "quiet", False) else (lambda m: None)


@command("eval", "train one candidate by warm-up KD and print its dev metrics, params, FLOPs, time")(_eval_options)
def cmd_eval(ns: argparse.Namespace) -> int:
    from exprsearch.kd.evaluate import STANDARD_SPEC, Evaluator
    from exprsearch.lang.parsing import parse_spec
    cfg = _eval_config(ns)
    spec = parse_spec(_spec_arg(ns.spec))
    ev = Evaluator(cfg, log=_log(ns))
    results = [ev.evaluate(spec)]
    if ns.baseline:
        results.append(ev.evaluate(STANDARD_SPEC))
    rows = []
    for r in results:
        metrics = "; ".join(f"{t}: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in m.items())
                            for t, m in r.metrics.items())
        rows.append([r.spec if len(r.spec) < 70 else r.spec[:67] + "...", r.status,
                     None if r.score is None else round(r.score, 2), metrics or r.reason,
                     f"{r.params / 1e6:.2f}M", f"{r.flops_per_token / 1e6:.1f}M", f"{r.seconds:.1f}s"])
    teacher = {t: s.teacher_metrics for t, s in ev.state.items()}
    human = table(rows, ["candidate", "status", "score", "dev metrics", "params", "FLOPs/token", "time"])
    human += "\nteacher dev: " + "; ".join(f"{t}: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in m.items())
                                          for t, m in teacher.items())
    emit(ns, human, {"config": to_dict(cfg), "results": [r.as_dict() for r in results], "teacher": teacher})
    return 0 if all(r.status == "ok" for r in results) else 1


def _teacher_options(p: argparse.ArgumentParser) -> None:
    _common(p)


@command("teacher", "fine-tune the teacher on GLUE task(s) and cache it (never twice)")(_teacher_options)
def cmd_teacher(ns: argparse.Namespace) -> int:
    from exprsearch.kd.glue import task
    from exprsearch.kd.paths import cache_root, resolve_data_dir
    from exprsearch.kd.evaluate import teacher_config
    from exprsearch.kd.teacher import default_teacher_dir, finetune_teacher
    cfg = _eval_config(ns)
    if not ns.task:
        raise ConfigError("name the task(s): --task RTE or --task RTE,MRPC")
    device = cfg.torch_device()
    out = {}
    for name in cfg.tasks:
        path = finetune_teacher(task(name), resolve_data_dir(cfg.data_dir),
                                Path(cfg.teacher) if cfg.teacher else default_teacher_dir(), teacher_config(cfg, name),
                                cache_root(cfg.cache_dir), device, _log(ns))
        out[name] = {"path": str(path), **json.loads((path / "exprsearch.json").read_text())}
    rows = [[t, ", ".join(f"{k} {100 * v:.2f}" for k, v in o["dev"].items()), f"{o['seconds']:.1f}s", o["path"]]
            for t, o in out.items()]
    emit(ns, table(rows, ["task", "dev", "fine-tune time", "cached at"]), out)
    return 0
