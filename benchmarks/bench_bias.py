"""Does the warm-up favour GELU?  Proxy vs final for FFNs that differ only in their activation
(issues 24 and 28), under the evidence protocol.

Candidates: 14 standard-shape FFNs -- ``linear1_Y(ACT(linear1_Y(x,wb1)),wb2)`` for eight
activations (gelu relu swish tanh sigmoid elu leaky_relu sqrelu), two input transforms of the
GELU FFN, and four gated ones (``wb3``: GEGLU, SwiGLU, ReGLU, bilinear) at the width that gives them the same matrices
(Y' = 3Y/2: three H x D/Y' matrices = two H x D/Y ones; at Y = 1 the nearest, Y' = 2).  For each
supernet warm-up (``standard``: GELU FFNs only; ``space``: a random expression of the search's
space per layer per step -- gated forms included) the candidates are scored by the **proxy** (the
search's own protocol and scoring: held-out training rows) and by the **final** protocol
(``_final.py``: kd/final.py on fresh seeds, reported on dev, with a 1.5x longer run on
``--check-seeds`` seeds to show convergence), each over ``--seeds`` seeds, in lock-step groups.
Reported per warm-up: GELU's lead over the mean of the other activations on the proxy and on the
final protocol, and Kendall's tau of proxy vs final over all candidates.

The protocol is a search preset's (``--preset quick``: SST-2 on 2 CPU cores; ``gpu``: four tasks)
at base width ``--base-width`` (D = 4H: 1536 for the default teacher).  Resumable and cut into
parts: every pass is written to the JSON as it ends; ``--resume`` skips passes already there and
``--deadline S`` stops before a pass that would not end S seconds after the start.

    PYTHONPATH=. python benchmarks/bench_bias.py --preset quick --base-width 1536 --ratio 2 --seeds 2 --resume
    PYTHONPATH=. python benchmarks/bench_bias.py --report        # the summary of the committed JSON
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from _common import Log, device_name, write_json
from _final import dev_score, run_finals, summarise as summarise_finals

OUT = Path(__file__).parent / "results" / "bench_bias.json"
ACTS = ("gelu", "relu", "swish", "tanh", "sigmoid", "elu", "leaky_relu", "sqrelu")
WARMUPS = ("standard", "space")


def candidates(y: int = 1) -> dict[str, str]:
    """The 14 FFNs at ratio Y (the gated ones at the ratio with the same matrices).

    >>> len(candidates(2))
    14

    >>> c = candidates(2)
    >>> c["gelu"], c["geglu"]
    ('linear1_2(gelu(linear1_2(x,wb1)),wb2)', 'linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)')
    """
    g = {1: 2, 2: 3}.get(y, 4)
    return {**{a: f"linear1_{y}({a}(linear1_{y}(x,wb1)),wb2)" for a in ACTS},
            "gelu_tanh_in": f"linear1_{y}(gelu(linear1_{y}(tanh(x),wb1)),wb2)",
            "gelu_max_in": f"linear1_{y}(gelu(linear1_{y}(max(x,tanh(x)),wb1)),wb2)",
            "geglu": f"linear1_{g}(mul(gelu(linear1_{g}(x,wb1)),linear1_{g}(x,wb3)),wb2)",
            "swiglu": f"linear1_{g}(mul(swish(linear1_{g}(x,wb1)),linear1_{g}(x,wb3)),wb2)",
            "reglu": f"linear1_{g}(mul(relu(linear1_{g}(x,wb1)),linear1_{g}(x,wb3)),wb2)",
            "bilinear": f"linear1_{g}(mul(linear1_{g}(x,wb1),linear1_{g}(x,wb3)),wb2)"}


CANDIDATES = candidates(1)


def summarise(result: dict) -> dict:
    """Per warm-up: mean score of each candidate per protocol, GELU's lead over the other
    activations, and Kendall's tau of proxy vs final (once finals exist); across warm-ups, tau of
    their proxy rankings (``proxy_tau_between_warmups``).

    >>> r = {"passes": {"standard/proxy/0": {"gelu": 60.0, "relu": 58.0, "tanh": 57.0},
    ...                 "standard/final/0": {"gelu": 62.0, "relu": 61.5, "tanh": 60.0},
    ...                 "space/proxy/0": {"gelu": 59.0, "relu": 59.5, "tanh": 56.0}}}
    >>> s = summarise(r)
    >>> s["standard"]["gelu_lead"], s["standard"]["kendall_tau"], s["space"]["gelu_lead"]
    ({'proxy': 2.5, 'final': 1.25}, 1.0, {'proxy': 1.25})
    >>> s["proxy_tau_between_warmups"]
    0.3333333333333333
    """
    from exprsearch.search.stats import kendall_tau, mean_std
    out: dict = {}
    for w in WARMUPS:
        means: dict[str, dict[str, float]] = {}
        for proto in ("proxy", "final"):
            runs = [v for k, v in result["passes"].items() if k.startswith(f"{w}/{proto}/")]
            names = sorted({n for r in runs for n, s in r.items() if s is not None})
            if names:
                means[proto] = {n: mean_std([r[n] for r in runs if r.get(n) is not None])[0] for n in names}
        if len(means.get("proxy", {})) < 3:
            continue
        lead = {p: m["gelu"] - sum(m[a] for a in ACTS if a != "gelu" and a in m)
                / max(1, sum(a != "gelu" and a in m for a in ACTS)) for p, m in means.items() if "gelu" in m}
        out[w] = {"means": means, "gelu_lead": lead,
                  "seeds": {p: sum(k.startswith(f"{w}/{p}/") for k in result["passes"]) for p in ("proxy", "final")}}
        both = [n for n in means["proxy"] if n in means.get("final", {})]
        if len(both) >= 3:
            out[w].update(lead_gap=abs(lead["proxy"] - lead["final"]),
                          kendall_tau=kendall_tau([means["proxy"][n] for n in both], [means["final"][n] for n in both]))
    if all(w in out for w in WARMUPS):
        a, b = (out[w]["means"]["proxy"] for w in WARMUPS)
        common = [n for n in a if n in b]
        out["proxy_tau_between_warmups"] = kendall_tau([a[n] for n in common], [b[n] for n in common])
    return out


PATHS = ("data_dir", "teacher", "cache_dir")  # where things are, not what is measured


def resume_conflict(old: dict, new: dict) -> str | None:
    """Why the passes of ``old`` cannot be continued by a run of ``new`` (None when they can):
    another candidate set, ratio or protocol setting (paths aside; settings only one side has are
    new fields with their defaults).

    >>> a = {"candidates": {"gelu": "g"}, "ratio": 2, "config": {"steps": 60, "data_dir": "a"}}
    >>> resume_conflict(a, {**a, "config": {"steps": 60, "data_dir": "b", "new": 1}}) is None
    True
    >>> resume_conflict(a, {**a, "config": {"steps": 80}})
    'it was run with steps=60, this run has steps=80'
    """
    if "passes" in old and not old["passes"]:
        return None
    for key in ("candidates", "ratio"):
        if key in old and old[key] != new[key]:
            return f"it was run with other {key}"
    was, now = old.get("config", {}), json.loads(json.dumps(new["config"]))  # as the JSON holds it: lists, not tuples
    diff = [k for k in was if k in now and k not in PATHS and was[k] != now[k]]
    return f"it was run with {diff[0]}={was[diff[0]]!r}, this run has {diff[0]}={now[diff[0]]!r}" if diff else None


def final_scores(result: dict) -> None:
    """Each warm-up's final passes at scale 1 as ``passes["{warm-up}/final/{seed}"]``: per
    candidate the mean of the tasks' main dev metrics x 100, as they end (a cut-off run's summary
    reports the seeds it has, and says how many).

    >>> run = {"status": "ok", "dev": {"acc": 0.8}}
    >>> r = {"passes": {}, "warmups": {"space": {"finals": {
    ...     "x1/7": {"seed": 7, "scale": 1.0, "runs": {"gelu": {"SST-2": run}}},
    ...     "x1.5/7": {"seed": 7, "scale": 1.5, "runs": {"gelu": {"SST-2": run}}}}}}}
    >>> final_scores(r); r["passes"]
    {'space/final/7': {'gelu': 80.0}}
    """
    for w, sub in result.get("warmups", {}).items():
        for p in sub.get("finals", {}).values():
            if p["scale"] == 1.0:
                tasks = list(next(iter(p["runs"].values())))
                result["passes"][f"{w}/final/{p['seed']}"] = {n: dev_score(p, n, tasks) for n in p["runs"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="quick", help="the search preset whose protocol is measured (quick | gpu)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--teacher", default=None)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--tasks", default=None, help="tasks (default: the preset's)")
    ap.add_argument("--base-width", type=int, default=1536, help="the students' D (D = 4H: 1536 for MiniLM)")
    ap.add_argument("--ratio", type=int, default=2, help="Y of the activation candidates (d = D / Y)")
    ap.add_argument("--seeds", type=int, default=2, help="proxy seeds and fresh final seeds per warm-up")
    ap.add_argument("--check-seeds", type=int, default=1, help="final seeds also run 1.5x longer (convergence)")
    ap.add_argument("--final-epochs", default="SST-2=2,CoLA=3,MRPC=5,RTE=5")
    ap.add_argument("--deadline", type=float, default=0, help="seconds: start no pass that would end later (0: none)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--report", action="store_true", help="print the summary of --out, train nothing")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    out = Path(args.out)
    if args.report:
        print(json.dumps(summarise(json.loads(out.read_text())), indent=2))
        return
    from exprsearch.kd.evaluate import EvalConfig, Evaluator
    from exprsearch.kd.final import FinalConfig, fresh_seeds
    from exprsearch.lang.parsing import parse_spec
    from exprsearch.search.presets import SEARCH_PRESETS
    from exprsearch.space.generate import Space
    t0 = time.perf_counter()
    log = Log()
    names, texts = list(candidates(args.ratio)), candidates(args.ratio)
    over = {k: v for k, v in (("data_dir", args.data_dir), ("teacher", args.teacher), ("cache_dir", args.cache_dir))
            if v}
    if args.tasks:
        over["tasks"] = tuple(args.tasks.split(","))
    base = EvalConfig(**{**SEARCH_PRESETS[args.preset][1], **over, "base_width": args.base_width, "group": len(names),
                         "hurdles": (), "warmup_space": Space(gates=True).describe()})
    result = json.loads(out.read_text()) if args.resume and out.exists() else {"passes": {}, "seconds": {}, "warmups": {}}
    fresh = {"benchmark": "bench_bias", "device": device_name(), "candidates": texts, "ratio": args.ratio,
             "config": asdict(base)}
    if why := resume_conflict(result, fresh):
        raise SystemExit(f"bench_bias: cannot resume {out}: {why}; start another --out or drop --resume")
    if result.get("device", fresh["device"]) != fresh["device"]:
        log(f"resuming passes run on {result['device']} on {fresh['device']}: each pass records its device")
    result.update({**fresh, "log": log.lines})

    def save() -> None:
        final_scores(result)
        result["summary"] = summarise(result)
        write_json(out, result)

    specs = [parse_spec(texts[n], strict=False).broadcast(base.layers) for n in names]
    fcfg = FinalConfig(epochs=1.0, task_epochs=args.final_epochs, eval_every=50, dropout=0.1)
    seeds = fresh_seeds(args.seeds, range(base.seed, base.seed + args.seeds))  # the proxy's: base.seed + k
    for w in WARMUPS:  # every warm-up's proxy passes first: minutes each, where a final is an hour on a CPU
        ev = None
        for seed in range(base.seed, base.seed + args.seeds):  # the proxy, as the search scores
            key = f"{w}/proxy/{seed}"
            if key in result["passes"]:
                continue
            took = max(result["seconds"].get(f"{w}/proxy", [0.0]) or [0.0])
            if args.deadline and time.perf_counter() - t0 + took > args.deadline:
                log(f"stopping before {key}: it would end after the deadline ({args.deadline:.0f}s)")
                return save()
            ev = ev or Evaluator(replace(base, warmup_sampling=w), log=log)
            t = time.perf_counter()
            res = ev.evaluate_many(specs, seed=seed)
            result["passes"][key] = {n: r.score for n, r in zip(names, res)}
            result["seconds"].setdefault(f"{w}/proxy", []).append(time.perf_counter() - t)
            result.setdefault("pass_devices", {})[key] = fresh["device"]
            save()
            log(f"{key}: {time.perf_counter() - t:.0f}s " + ", ".join(f"{n} {r.score:.2f}" for n, r in zip(names, res)
                                                                   if r.score is not None))
    evs: dict[str, Any] = {}
    for check in sorted({0, args.check_seeds}):  # every warm-up's x1 passes first, then the 1.5x checks
        for w in WARMUPS:
            sub = result["warmups"].setdefault(w, {})
            if not all(f"x{s_:g}/{sd}" in sub.get("finals", {}) for s_, sd in
                       [(1.0, sd) for sd in seeds] + [(1.5, sd) for sd in seeds[:check]]):
                if w not in evs:
                    evs[w] = Evaluator(replace(base, warmup_sampling=w), log=log)
                if not run_finals(evs[w], list(zip(names, specs)), fcfg, seeds, check, sub, save, log,
                                  args.deadline, t0):
                    return save()
                sub["final_config"] = asdict(fcfg)
            sub["check_seeds"] = seeds[:args.check_seeds]
            sub["summary"] = summarise_finals(sub, names, "gelu", list(sub["finals"][f"x1/{seeds[0]}"]["runs"]["gelu"]))
            save()
    log(json.dumps(result.get("summary", {}), indent=1)[:3000])


if __name__ == "__main__":
    main()
