"""Does the warm-up favour GELU?  Proxy vs final for FFNs that differ only in their activation
(issue 24, item 1).

Candidates: >= 12 standard-shape FFNs -- ``linear1_1(ACT(linear1_1(x,wb1)),wb2)`` for eight
activations (gelu relu swish tanh sigmoid elu leaky_relu sqrelu), two input transforms of the
GELU FFN, and the gated GEGLU / SwiGLU (``wb3``).  For each supernet warm-up (``standard``: GELU
FFNs only, as before; ``space``: a random expression of the space per layer per step) the
candidates are scored by the **proxy** (the search protocol) and by the **final** protocol
(kd/final.py: a full KD fine-tune, the best checkpoint on held-out training rows), each over
``--seeds`` seeds, in lock-step groups.  Reported per warm-up: GELU's lead over the mean of the
other activations on the proxy and on the final protocol (goal: within 0.3 of each other), and
Kendall's tau of proxy vs final over all candidates (goal >= 0.7).

Resumable and cut into parts: every (warm-up, protocol, seed) pass is written to the JSON as it
finishes; ``--resume`` skips passes already there and ``--deadline S`` stops before starting a
pass that would not end S seconds after the start (device calls last at most 10 minutes).

    PYTHONPATH=. python benchmarks/bench_bias.py --data-dir GLUE --teacher MINILM --deadline 540 [--resume]
    PYTHONPATH=. python benchmarks/bench_bias.py --report        # the summary of the committed JSON
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

from _common import Log, device_name, eval_config, glue_parser, write_json

OUT = Path(__file__).parent / "results" / "bench_bias.json"
ACTS = ("gelu", "relu", "swish", "tanh", "sigmoid", "elu", "leaky_relu", "sqrelu")
CANDIDATES = {**{a: f"linear1_1({a}(linear1_1(x,wb1)),wb2)" for a in ACTS},
              "gelu_tanh_in": "linear1_1(gelu(linear1_1(tanh(x),wb1)),wb2)",
              "gelu_max_in": "linear1_1(gelu(linear1_1(max(x,tanh(x)),wb1)),wb2)",
              "geglu": "linear1_2(mul(gelu(linear1_2(x,wb1)),linear1_2(x,wb3)),wb2)",
              "swiglu": "linear1_2(mul(swish(linear1_2(x,wb1)),linear1_2(x,wb3)),wb2)"}
WARMUPS = ("standard", "space")


def summarise(result: dict) -> dict:
    """Per warm-up: mean score of each candidate per protocol, GELU's lead over the other
    activations, and Kendall's tau of proxy vs final.

    >>> r = {"passes": {"standard/proxy/0": {"gelu": 60.0, "relu": 58.0, "tanh": 57.0},
    ...                 "standard/final/0": {"gelu": 62.0, "relu": 61.5, "tanh": 60.0}}}
    >>> s = summarise(r)["standard"]
    >>> s["gelu_lead"], s["kendall_tau"]
    ({'proxy': 2.5, 'final': 1.25}, 1.0)
    """
    from exprsearch.search.stats import kendall_tau, mean_std
    out = {}
    for w in WARMUPS:
        means: dict[str, dict[str, float]] = {}
        for proto in ("proxy", "final"):
            runs = [v for k, v in result["passes"].items() if k.startswith(f"{w}/{proto}/")]
            names = sorted({n for r in runs for n, s in r.items() if s is not None})
            means[proto] = {n: mean_std([r[n] for r in runs if r.get(n) is not None])[0] for n in names}
        both = [n for n in means["proxy"] if n in means["final"]]
        if len(both) < 3:
            continue
        lead = {p: means[p]["gelu"] - sum(means[p][a] for a in ACTS if a != "gelu" and a in means[p])
                / max(1, sum(a != "gelu" and a in means[p] for a in ACTS)) for p in ("proxy", "final")}
        out[w] = {"means": means, "gelu_lead": lead, "lead_gap": abs(lead["proxy"] - lead["final"]),
                  "kendall_tau": kendall_tau([means["proxy"][n] for n in both], [means["final"][n] for n in both]),
                  "seeds": {p: sum(k.startswith(f"{w}/{p}/") for k in result["passes"]) for p in ("proxy", "final")}}
    return out


def main() -> None:
    ap = glue_parser(__doc__, tasks="CoLA,SST-2", warmup_steps=600, out=OUT, teacher_batch=32)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--final-epochs", default="CoLA=3,SST-2=1", help="final protocol epochs per task")
    ap.add_argument("--heldout-rows", type=int, default=2000)
    ap.add_argument("--deadline", type=float, default=0, help="seconds: start no pass that would end later (0: none)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--report", action="store_true", help="print the summary of --out, train nothing")
    args = ap.parse_args()
    out = Path(args.out)
    if args.report:
        print(json.dumps(summarise(json.loads(out.read_text())), indent=2))
        return
    from exprsearch.kd.evaluate import Evaluator
    from exprsearch.kd.final import FinalConfig, finetune
    from exprsearch.kd.glue import score, task
    from exprsearch.lang.parsing import parse_spec
    t0 = time.perf_counter()
    log = Log()
    base = replace(eval_config(args), heldout_rows=args.heldout_rows, score_on="dev", group=len(CANDIDATES))
    result = json.loads(out.read_text()) if args.resume and out.exists() else {"passes": {}, "seconds": {}}
    result.update({"benchmark": "bench_bias", "device": device_name(), "candidates": CANDIDATES,
                   "config": asdict(base), "log": log.lines})
    names = list(CANDIDATES)
    specs = [parse_spec(CANDIDATES[n], strict=False).broadcast(base.layers) for n in names]
    fcfg = FinalConfig(epochs=1.0, task_epochs=args.final_epochs, eval_every=50, dropout=0.1)
    for w in WARMUPS:
        ev = Evaluator(replace(base, warmup_sampling=w), log=log)
        for seed in range(args.seeds):
            for proto in ("proxy", "final"):
                key = f"{w}/{proto}/{seed}"
                if key in result["passes"]:
                    continue
                took = max(result["seconds"].get(f"{w}/{proto}", [0.0]) or [0.0])
                if args.deadline and time.perf_counter() - t0 + took > args.deadline:
                    log(f"stopping before {key}: it would end after the deadline ({args.deadline:.0f}s)")
                    write_json(out, result)
                    return
                t = time.perf_counter()
                if proto == "proxy":
                    res = ev.evaluate_many(specs, seed=seed)
                    scores = {n: r.score for n, r in zip(names, res)}
                else:
                    per_task = {t_: finetune(ev, specs, t_, seed, fcfg, keep_models=False) for t_ in ev.state}
                    scores = {}
                    for i, n in enumerate(names):
                        runs = [per_task[t_][i] for t_ in ev.state]
                        scores[n] = (score({r_t: r.dev for r_t, r in zip(ev.state, runs)}, [task(t_) for t_ in ev.state])
                                     if all(r.status == "ok" for r in runs) else None)
                result["passes"][key] = scores
                result["seconds"].setdefault(f"{w}/{proto}", []).append(time.perf_counter() - t)
                result["summary"] = summarise(result)
                write_json(out, result)
                log(f"{key}: {time.perf_counter() - t:.0f}s " + ", ".join(f"{n} {s:.2f}" for n, s in scores.items()
                                                                        if s is not None))
    log(json.dumps(result.get("summary", {}), indent=1)[:2000])


if __name__ == "__main__":
    main()
