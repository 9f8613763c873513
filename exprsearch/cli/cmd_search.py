"""``exprsearch search | show | export``: the batch search and its stored runs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from exprsearch.errors import ConfigError
from exprsearch.search.leaderboard import leaderboard_table, pareto, pareto_table
from exprsearch.search.liveness import shown
from exprsearch.search.presets import SEARCH_PRESETS

from .checks import check_count, check_eval, check_search, check_stored, check_task_names
from .common import resolve_run, task_options

if TYPE_CHECKING:
    from exprsearch.kd.protocol import EvalConfig
    from exprsearch.search.search import SearchConfig
from .main import command, emit
from .options import add_dataclass_args, from_args


def _store(ns: argparse.Namespace, create: bool = False, readonly: bool = False):
    """The --store of a command; only ``search`` may create one (``show typo.db`` is an error),
    and the commands that only read open it read-only (the file is left as it is)."""
    from exprsearch.search.store import Store, default_store_path
    return Store(ns.store or default_store_path(), create=create, readonly=readonly)


def _store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", help="SQLite file of runs (default: $EXPRSEARCH_STORE or ./exprsearch-runs.db)")


def _search_options(p: argparse.ArgumentParser) -> None:
    from exprsearch.kd.evaluate import EvalConfig
    from exprsearch.search.search import SearchConfig
    p.add_argument("--preset", choices=sorted(SEARCH_PRESETS),
                   help="a bundle of settings (explicit options win; default: none)")
    p.add_argument("--tasks", "--task", dest="tasks", default=argparse.SUPPRESS,
                   help="GLUE tasks, comma-separated (e.g. RTE,MRPC); with --train FILE: your data's name "
                        "(default: the file's stem without a split word)")
    p.add_argument("--resume", metavar="RUN", help="continue a stored run ('last' = the newest; default: a new run)")
    p.add_argument("--top", type=int, default=10, help="leaderboard rows to print (default 10)")
    _store_option(p)
    add_dataclass_args(p, SearchConfig)
    add_dataclass_args(p, EvalConfig, skip=("tasks", "seed"))  # --seed (SearchConfig) seeds both


def _configs(ns: argparse.Namespace):
    from exprsearch.kd.evaluate import EvalConfig
    from exprsearch.search.search import SearchConfig
    s_preset, e_preset = SEARCH_PRESETS.get(ns.preset, ({}, {})) if ns.preset else ({}, {})
    scfg = from_args(SearchConfig, ns, **{k: v for k, v in s_preset.items() if not hasattr(ns, k)})
    check_search(scfg)
    over = {k: v for k, v in e_preset.items() if not hasattr(ns, k)}
    over.update(task_options(ns, getattr(ns, "tasks", None)))
    ecfg = from_args(EvalConfig, ns, **over, seed=scfg.seed)
    check_eval(ecfg)
    ecfg.torch_device()  # --device cuda without CUDA: an error now, not after the teacher's fine-tuning
    ecfg.check_data()  # a bad data file: one message, and no run in the store
    _check_with_teacher(scfg, ecfg)
    return scfg, ecfg


def _check_with_teacher(scfg: SearchConfig, ecfg: EvalConfig) -> None:
    """What the two configs and the teacher decide together: a LayerDrop depth is at most the
    student's layers; mha(heads=K) keeps at most the teacher's heads, lsra(heads=K) splits half
    its width."""
    import json

    from exprsearch.kd.teacher import check_teacher_dir, default_teacher_dir
    from exprsearch.space.samplers import parse_attn_choices
    if any(d > ecfg.layers for d in scfg.depths):
        raise ConfigError(f"depths {','.join(map(str, scfg.depths))}: a student has at most --layers {ecfg.layers}")
    attn = [a for a in parse_attn_choices(scfg.attn_choices) if a is not None and a.heads is not None]
    if not attn:
        return
    from exprsearch.compiler.teachers import teacher_shape
    teacher = check_teacher_dir(Path(ecfg.teacher) if ecfg.teacher else default_teacher_dir())
    info = teacher_shape(json.loads((teacher / "config.json").read_text(encoding="utf-8")))
    heads, half = info["num_attention_heads"], info["hidden_size"] // 2
    for a in attn:
        if a.kind == "mha" and a.heads > heads:
            raise ConfigError(f"attention choice mha(heads={a.heads}): the teacher has {heads} heads per layer")
        if a.kind == "lsra" and half % a.heads:
            raise ConfigError(f"attention choice lsra(heads={a.heads}): half the teacher's width ({half}) must be "
                              f"a multiple of the heads")


@command("search", "search FFN expressions (3 progressive stages) and store every candidate")(_search_options)
def cmd_search(ns: argparse.Namespace) -> int:
    from exprsearch.search.search import Search
    check_count("top", ns.top, 1, 1_000_000)
    configs = None if ns.resume else _configs(ns)  # every option checked before the store is touched
    store = _store(ns, create=not ns.resume)  # --resume needs the run's store
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if ns.resume:
        run = resolve_run(store, ns.resume)
        config = store.run(run)["config"]
        if not isinstance(config.get("search"), dict) or not isinstance(config.get("eval"), dict):
            raise ConfigError(f"run {run} cannot be resumed: " + (
                "its stored config is damaged" if not config else
                f"it is no search (made by exprsearch {config.get('command', 'of another version')})"))
        from exprsearch.kd.protocol import EvalConfig
        from exprsearch.search.search import SearchConfig
        check_stored(SearchConfig, config["search"], f"run {run} cannot be resumed")
        check_stored(EvalConfig, config["eval"], f"run {run} cannot be resumed")
        check_task_names(config["eval"].get("tasks", ()))
        search = Search.resume(store, run, log=log)
        log(f"resuming run {run}: {store.count(run)} candidates already stored")
    else:
        assert configs is not None  # built above: not resuming
        scfg, ecfg = configs
        search = Search(store, scfg, ecfg, log=log)
        log(f"run {search.run_id} -> {store.path}")
    summary = search.run()
    rows = store.candidates(search.run_id)
    human = "\n".join([f"run {search.run_id}: {summary['stats']} in {summary['seconds']:.0f}s",
                       "leaderboard:", leaderboard_table(rows, ns.top),
                       "Pareto front (score vs params vs latency x the standard FFN timed alongside; closer than "
                       "the measured spread: a tie):", pareto_table(rows),
                       f"show it again with: exprsearch show {search.run_id} --store {store.path}"])
    emit(ns, human, {**summary, "leaderboard": sorted((r for r in rows if r["status"] == "ok"),
                                                      key=lambda r: -r["score"])[:ns.top]})
    return 0


def _show_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", default="last", help="run id ('last' = the newest; 'list' = all runs)")
    p.add_argument("--top", type=int, default=10, help="leaderboard rows (default 10)")
    _store_option(p)


@command("show", "leaderboard and Pareto front of a stored run (or 'list' the runs)")(_show_options)
def cmd_show(ns: argparse.Namespace) -> int:
    from exprsearch.lang.display import table
    check_count("top", ns.top, 1, 1_000_000)
    store = _store(ns, readonly=True)
    if ns.run == "list":
        runs = [{**r, **dict(zip(("status", "notes"), shown(r["status"], r.get("notes"))))} for r in store.runs()]
        emit(ns, table([[r["run_id"], r["status"], r["candidates"], None if r["best"] is None else round(r["best"], 2),
                         _clip(r.get("notes") or "", 70)] for r in runs], ["run", "status", "candidates", "best", "why"]),
             runs)
        return 0
    run = resolve_run(store, ns.run)
    info, rows = store.run(run), store.candidates(run)
    info["status"], info["notes"] = shown(info["status"], info.get("notes"))  # 'died': its process is gone
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "stopped")}
    hint = ([f"not finished: still running, or stopped (continue it: exprsearch search --resume {run} "
             f"--store {store.path})"] if info["status"] == "running" else
            [f"{info['status']}: {info.get('notes') or 'no reason recorded'}"]
            if info["status"] in ("failed", "interrupted", "died") else [])
    human = "\n".join([f"run {run} ({info['status']}): {len(rows)} candidates {counts}", *hint,
                       "leaderboard:", leaderboard_table(rows, ns.top), "Pareto front:", pareto_table(rows)])
    emit(ns, human, {"run": info, "counts": counts, "pareto": pareto(rows),
                     "leaderboard": sorted((r for r in rows if r["status"] == "ok"), key=lambda r: -r["score"])[:ns.top]})
    return 0


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def _export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", default="last", help="run id ('last' = the newest)")
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="(default: csv)")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    _store_option(p)


@command("export", "export a stored run as CSV or JSON")(_export_options)
def cmd_export(ns: argparse.Namespace) -> int:
    store = _store(ns, readonly=True)
    run = resolve_run(store, ns.run)
    text = store.export(run, ns.format)
    if ns.output:
        try:
            Path(ns.output).write_text(text, encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"cannot write {ns.output}: {err}") from None
        print(f"wrote {ns.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0




def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", default="last", help="run id ('last' = the newest)")
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument("--top", type=int, default=15, help="leaderboard rows (default 15)")
    _store_option(p)


@command("report", "write a self-contained HTML report of a stored run")(_report_options)
def cmd_report(ns: argparse.Namespace) -> int:
    from exprsearch.search.report import write_report
    check_count("top", ns.top, 1, 1_000_000)
    if Path(ns.output).is_dir():
        raise ConfigError(f"-o {ns.output} is a directory: name the HTML file to write, e.g. {Path(ns.output) / 'report.html'}")
    store = _store(ns, readonly=True)
    run = resolve_run(store, ns.run)
    try:
        path = write_report(store, run, ns.output, top=ns.top)
    except OSError as err:
        raise ConfigError(f"cannot write {ns.output}: {err.strerror or err}") from None
    emit(ns, f"wrote {path}", {"report": str(path), "run": run})
    return 0


def _repl_options(p: argparse.ArgumentParser) -> None:
    pass


@command("repl", "interactive expression inspector (also reads commands from a pipe)")(_repl_options)
def cmd_repl(ns: argparse.Namespace) -> int:
    from .repl import main
    return main()
