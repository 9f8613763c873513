"""``exprsearch eval`` and ``exprsearch teacher``: KD-evaluate a candidate; fine-tune teachers."""
from __future__ import annotations

import argparse
import json

from exprsearch.errors import ConfigError
from exprsearch.lang.display import table

from .common import add_eval_options, eval_config, logger, read_spec_arg
from .main import command, emit
from .options import to_dict


def _eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="an FFN expression, '[e1; e2; ...]', or a file with one expression per layer")
    p.add_argument("--baseline", action="store_true",
                   help="also train the standard-FFN student the same way and compare")
    add_eval_options(p)


@command("eval", "train one candidate by warm-up KD and print its score (held-out rows), dev metrics, params, "
                 "FLOPs, time")(_eval_options)
def cmd_eval(ns: argparse.Namespace) -> int:
    from exprsearch.kd.evaluate import Evaluator
    from exprsearch.lang.standard import STANDARD_SPEC
    cfg = eval_config(ns)
    spec = read_spec_arg(ns.spec)
    ev = Evaluator(cfg, log=logger(ns))
    results = [ev.evaluate(spec, report_dev=True)]  # a report: the dev rows are read (a search never does)
    if ns.baseline:
        results.append(ev.evaluate(STANDARD_SPEC, report_dev=True))
    rows = []
    for r in results:
        metrics = "; ".join(f"{t}: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in m.items())
                            for t, m in r.metrics.items())
        rows.append([r.spec if len(r.spec) < 70 else r.spec[:67] + "...", r.status,
                     None if r.score is None else round(r.score, 2), metrics or r.reason,
                     f"{r.params / 1e6:.2f}M", f"{r.flops_per_token / 1e6:.1f}M", f"{r.seconds:.1f}s"])
    teacher = {t: s.teacher_metrics for t, s in ev.state.items()}
    human = table(rows, ["candidate", "status", "score", "metrics (heldout_*: the score's rows; others: dev)",
                         "params", "FLOPs/token", "time"])
    human += "\nteacher dev: " + "; ".join(f"{t}: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in m.items())
                                          for t, m in teacher.items())
    emit(ns, human, {"config": to_dict(cfg), "results": [r.as_dict() for r in results], "teacher": teacher})
    return 0 if all(r.status == "ok" for r in results) else 1


def _teacher_options(p: argparse.ArgumentParser) -> None:
    add_eval_options(p)


@command("teacher", "fine-tune the teacher on GLUE task(s) or your own data and cache it (never twice)")(_teacher_options)
def cmd_teacher(ns: argparse.Namespace) -> int:
    from exprsearch.kd.evaluate import teacher_config
    from exprsearch.rows.glue import task
    from exprsearch.kd.prepare import locations
    from exprsearch.kd.teacher import finetune_teacher
    cfg = eval_config(ns)
    if not ns.task and not cfg.train_file:
        raise ConfigError("name the task(s): --task RTE or --task RTE,MRPC (or your own data: --train FILE ...)")
    device = cfg.torch_device()
    data_dir, teacher_dir, cache = locations(cfg)
    out = {}
    for name in cfg.tasks:
        path = finetune_teacher(task(name), data_dir, teacher_dir, teacher_config(cfg, name), cache, device,
                                logger(ns))
        out[name] = {"path": str(path), **json.loads((path / "exprsearch.json").read_text())}
    rows = [[t, ", ".join(f"{k} {100 * v:.2f}" for k, v in o["dev"].items()), f"{o['seconds']:.1f}s", o["path"]]
            for t, o in out.items()]
    emit(ns, table(rows, ["task", "dev", "fine-tune time", "cached at"]), out)
    return 0
