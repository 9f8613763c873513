"""``exprsearch exits``: early exit and layer skipping for a run's best student or any spec."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from exprsearch.errors import ConfigError
from exprsearch.lang.display import table

from .checks import check_exits
from .common import add_eval_options, eval_config, logger, run_best, spec_text
from .main import command, emit
from .options import add_dataclass_args, from_args

if TYPE_CHECKING:
    from exprsearch.search.store import Store


def _exits_options(p: argparse.ArgumentParser) -> None:
    from exprsearch.kd.exits import ExitConfig
    p.add_argument("target", metavar="RUN_OR_SPEC",
                   help="a stored run (its best candidate; 'last' = newest), an expression, '[e1; ...]' or a spec file")
    p.add_argument("--all-policies", action="store_true", help="sweep entropy, patience and gate")
    p.add_argument("--store", help="SQLite file of runs (default: $EXPRSEARCH_STORE or ./exprsearch-runs.db)")
    add_eval_options(p)
    add_dataclass_args(p, ExitConfig)


def resolve_target(target: str, store: Store | None) -> tuple[str, str | None]:
    """RUN_OR_SPEC -> (spec text, run id or None): a stored run ('last' = the newest) gives its
    best successful candidate; anything else is a spec (text or a file)."""
    found = run_best(store, target, "add exits to")
    return (found[0]["spec"], found[1]) if found else (spec_text(target), None)


def _fmt(row: dict, chosen: bool) -> list:
    setting = ", ".join(f"{k}={v}" for k, v in row["setting"].items() if k != "tolerance")
    return [("* " if chosen else "  ") + f"{row['policy']}({setting})", round(row["score"], 2),
            round(row["avg_layers"], 2), f"x{row['layer_ratio']:.2f}",
            f"x{row['speedup_b1']:.2f}" if "speedup_b1" in row else "-",
            f"x{row['speedup_b32']:.2f}" if "speedup_b32" in row else "-"]


@command("exits", "add exit heads / skipping gates to a student; print accuracy vs layers run vs speed-up")(
    _exits_options)
def cmd_exits(ns: argparse.Namespace) -> int:
    from exprsearch.kd.exits import ExitConfig, run_exits
    from exprsearch.lang.parsing import parse_spec
    from exprsearch.search.store import Store, default_store_path

    from .options import to_dict
    ecfg, xcfg = eval_config(ns), from_args(ExitConfig, ns)
    check_exits(xcfg)
    if (not ns.task and not ecfg.train_file) or len(ecfg.tasks) != 1:
        raise ConfigError("name one task: --task SST-2 (or your own data: --train FILE ...)")
    name = ecfg.tasks[0]
    store = Store(ns.store or default_store_path())
    spec, run = resolve_target(ns.target, store)
    policies = ("entropy", "patience", "gate") if ns.all_policies else (xcfg.policy,)
    out = run_exits(parse_spec(spec, strict=run is None), name, ecfg, xcfg, policies=policies, log=logger(ns))
    if run is None:
        run = store.new_run({"command": "exits", "spec": spec, "eval": to_dict(ecfg), "exits": to_dict(xcfg)})
        store.set_status(run, "done")
    for pol, rows in out["rows"].items():
        store.add_exits(run, out["spec"], name, pol, to_dict(xcfg), rows + [{**out["chosen"][pol], "chosen": True}])
    main = next(iter(out["static"]))
    lines = [f"student: {spec if len(spec) < 100 else spec[:97] + '...'}",
             f"static student ({out['layers']} layers): " + ", ".join(f"{k} {100 * v:.2f}" for k, v in out["static"].items())]
    for pol, rows in out["rows"].items():
        pick = out["chosen"][pol]
        body = [_fmt(r, r["setting"] == pick["setting"]) for r in rows]
        if not any(r["setting"] == pick["setting"] for r in rows):
            body.append(_fmt(pick, True))
        lines.append(table(body, ["policy (setting)", main if len(out["static"]) == 1 else "score", "avg layers",
                                  "fewer layers", "speed-up b1", "speed-up b32"]))
        if "cpu_speedup_b1" in pick:
            lines.append(f"  chosen setting on CPU, one example at a time: x{pick['cpu_speedup_b1']:.2f}")
    lines.append(f"stored with run {run} in {store.path} (* = the chosen setting)")
    emit(ns, "\n".join(lines), {**out, "run_id": run})
    return 0
