"""``exprsearch distill``: a run's best (or any spec) --> a shipped student per task."""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from exprsearch.errors import ExprSearchError

from .checks import check_final
from .common import add_eval_options, eval_config, logger, run_best, spec_text
from .main import command, emit
from .options import add_dataclass_args, from_args

# the final protocol of each preset (the search presets' teachers and supernets are reused)
FINAL_PRESETS: dict[str, dict[str, Any]] = {
    "cpu": dict(epochs=2.0, eval_every=5), "quick": dict(epochs=1.0, eval_every=25),
    "gpu": dict(epochs=3.0, task_epochs="MRPC=5,RTE=5,CoLA=5", eval_every=50)}
DEFAULT_HELDOUT = 2000  # training rows held out to choose the checkpoint (at most a fifth)


def _options(p: argparse.ArgumentParser) -> None:
    from exprsearch.kd.final import FinalConfig
    p.add_argument("target", help="a run id, 'last' (its best candidate), an FFN expression, '[e1; e2; ...]' or a file")
    p.add_argument("-o", "--output", required=True, help="the model directory to write (DIR/<task> for several tasks)")
    p.add_argument("--seeds", type=int, default=1, metavar="N", help="fresh training seeds (10000, 10001, ...: never "
                   "a seed the search trained with); the best on held-out training rows is saved (default: 1)")
    p.add_argument("--store", help="SQLite file of runs (default: $EXPRSEARCH_STORE or ./exprsearch-runs.db)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    add_eval_options(p)
    add_dataclass_args(p, FinalConfig, skip=("dropout", "scale"))
    p.add_argument("--final-dropout", type=float, default=0.1, help="student dropout while fine-tuning (default: 0.1)")


def _student_bytes(cfg) -> int:
    """About what the students take on disk: weights and ONNX, each at most the teacher's size."""
    from exprsearch.kd.teacher import default_teacher_dir
    teacher = Path(cfg.teacher) if cfg.teacher else default_teacher_dir()
    weights = sum(f.stat().st_size for f in teacher.glob("*") if f.suffix in (".safetensors", ".bin", ".pt"))
    return 2 * weights * len(cfg.tasks)


def _target(ns: argparse.Namespace) -> tuple[str, str, tuple[Path, str] | None]:
    """(spec text, where it came from, (store, run) when it is a stored run's best candidate)."""
    from exprsearch.search.store import Store, default_store_path
    path = Path(ns.store) if ns.store else default_store_path()
    looks_like_run = ns.target == "last" or not any(c in ns.target for c in "([;\n")
    store = Store(path, readonly=True) if looks_like_run and (ns.target == "last" or path.is_file()) else None
    found = run_best(store, ns.target, "distil", trained_only=True)
    if found:
        best, run = found
        return best["spec"], f"run {run} of {path} (its best candidate, score {best['score']:.2f})", (path, run)
    return spec_text(ns.target), "the spec given", None


@command("distill", "train a spec (or a run's best) with the final protocol and save it as a Hugging Face "
                    "model (weights, tokenizer, modeling file, ONNX, model card)")(_options)
def cmd_distill(ns: argparse.Namespace) -> int:
    from exprsearch.kd.evaluate import Evaluator
    from exprsearch.kd.final import FinalConfig
    from exprsearch.rows.glue import task
    from exprsearch.lang.parsing import parse_spec
    from exprsearch.ship.distill import distill
    from exprsearch.ship.outdir import no_space, reserve
    fcfg = from_args(FinalConfig, ns, **{k: v for k, v in FINAL_PRESETS.get(ns.preset or "", {}).items()
                                         if not hasattr(ns, k)}, dropout=ns.final_dropout)
    check_final(fcfg, ns.seeds)  # every option, the target and -o are checked before any training
    text, source, stored = _target(ns)
    spec = parse_spec(text, strict=False)
    run_cfg: dict = {}
    if stored is not None:  # a run's best: its own protocol (tasks, data, teacher, held-out rows, warm-up)
        from exprsearch.search.store import Store
        run_cfg = Store(stored[0], readonly=True).run(stored[1])["config"]
    cfg = eval_config(ns, stored=run_cfg.get("eval"))
    if not cfg.heldout_rows:  # the final protocol chooses checkpoints and the seed on held-out rows
        cfg = replace(cfg, heldout_rows=DEFAULT_HELDOUT, score_on="heldout")
    baseline, used = None, [cfg.seed]
    if stored is not None:  # the run's own baseline (width-matched under its budget) and the seeds it trained with
        if run_cfg.get("baseline"):
            baseline = parse_spec(run_cfg["baseline"], strict=False)
        seed = int(run_cfg.get("search", {}).get("seed", cfg.seed))
        used = [seed] + [seed + k for k in range(1, int(run_cfg.get("search", {}).get("rerank_seeds", 0) or 0) + 1)]
    log = logger(ns)
    names = list(dict.fromkeys(task(t).name for t in cfg.tasks))  # the evaluator's names: distill's folders
    with reserve(Path(ns.output), names, ns.overwrite, _student_bytes(cfg)):
        log(f"distilling {source}: {spec}" + (f" (the run's protocol: {', '.join(cfg.tasks)}, {cfg.heldout_rows} "
                                              f"held-out rows)" if run_cfg.get("eval") else ""))
        ev = Evaluator(cfg, log=log)
        command_line = "exprsearch " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["distill"] \
            else f"exprsearch distill {shlex.quote(str(spec))} --task {','.join(cfg.tasks)} -o DIR"
        try:
            results = distill(ev, spec, Path(ns.output), fcfg, ns.seeds, command=command_line, source=source,
                              overwrite=ns.overwrite, log=log, baseline=baseline, used_seeds=used)
        except Exception as err:
            if no_space(err):  # nothing half-written is left: distill writes aside, then renames
                raise ExprSearchError(f"no space left on the device of {ns.output}: the student was trained but "
                                      f"could not be written ({err}); free some space and run again") from None
            raise
    if stored is not None:  # the run's report links the cards
        from exprsearch.search.store import Store
        store = Store(stored[0], create=False)
        for r in results:
            store.add_artifact(stored[1], r["task"], r["dir"], r["spec"], r["student"]["mean"], r["student"]["std"] or 0.0,
                               {k: v for k, v in r.items() if k not in ("student", "standard")})
    lines = []
    for r in results:
        s, std = r["student"], r["standard"]
        lines.append(f"{r['task']}: dev {r['main_metric']} {s['mean']:.2f} ± {s['std']:.2f} over {len(s['seeds'])} "
                     f"seed(s) (kept seed {r['chosen_seed']})"
                     + (f", standard FFN {std['mean']:.2f} ± {std['std']:.2f} (FFN params {s['ffn_params']:,} vs "
                        f"{std['ffn_params']:,})" if std and std["mean"] is not None else "")
                     + f", teacher {r['teacher'].get(r['main_metric'], float('nan')):.2f} -> {r['dir']}")
        lines += [f"  warning: {w}" for w in r.get("check", {}).get("warnings", [])]  # also at the card's top
    emit(ns, "\n".join(lines), results)
    return 0
