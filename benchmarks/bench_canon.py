"""Throughput of text -> parse -> validate -> canonicalise -> dedup on one CPU core.

Generates N expressions (uniform samples of the default space plus mutants of them, so the set
holds realistic duplicates), writes them as text, then times the pipeline over them in a fresh
process pinned to one core (so no cache is warm).  Writes benchmarks/results/bench_canon.json.

    python benchmarks/bench_canon.py [--n 20000] [--seed 0]
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write_json  # noqa: E402

OUT = Path(__file__).parent / "results" / "bench_canon.json"


def generate(n: int, seed: int) -> list[str]:
    import exprsearch as es
    sp = es.Space()
    rng = random.Random(seed)
    pool = [es.sample(sp, rng) for _ in range(n // 2)]
    texts = [str(e) for e in pool]
    while len(texts) < n:
        child, _ = es.mutate(rng.choice(pool), sp, rng)
        texts.append(str(child))
    rng.shuffle(texts)
    return texts


def timed_run(path: str, use_sympy: bool, tuned_gc: bool = True) -> dict:
    """Runs in the child process: one core, cold caches."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import torch
    torch.set_num_threads(1)
    import exprsearch as es
    from exprsearch.lang.syntax import parse_layers
    texts = Path(path).read_text().splitlines()
    es.parse("x", validate=False)  # build the parser tables (one-off, reported separately)
    if tuned_gc:
        es.tune_gc()  # what the CLI does
    t0 = time.perf_counter()
    asts = [parse_layers(t)[0] for t in texts]
    t1 = time.perf_counter()
    for e in asts:
        es.validate(e)
    t2 = time.perf_counter()
    canon = [es.canonicalize(e) for e in asts]
    t3 = time.perf_counter()
    dd = es.Deduper(use_sympy=use_sympy)
    for e in canon:
        dd.add(e)
    t4 = time.perf_counter()
    total = t4 - t0
    return {"expressions": len(texts), "use_sympy": use_sympy, "tuned_gc": tuned_gc,
            "seconds": {"parse": t1 - t0, "validate": t2 - t1, "canonicalize": t3 - t2,
                        "dedup": t4 - t3, "total": total},
            "expr_per_s": len(texts) / total,
            "distinct_canonical_forms": len(set(canon)), "classes": len(dd),
            "proofs": dd.proofs, "collisions": dd.collisions}


def profile_run(path: str) -> list[str]:
    prof = cProfile.Profile()
    prof.enable()
    timed_run(path, use_sympy=True)
    prof.disable()
    st = pstats.Stats(prof).sort_stats("tottime")
    rows = []
    for (file, line, fn), (_, calls, tt, ct, _) in list(st.stats.items()):
        rows.append((tt, f"{Path(file).name}:{fn} calls={calls} self={tt:.3f}s cum={ct:.3f}s"))
    return [r for _, r in sorted(rows, reverse=True)[:12]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, path = args.child
        result = (profile_run(path) if mode == "profile" else
                  timed_run(path, mode == "sympy", tuned_gc=mode != "default_gc"))
        print(json.dumps(result))
        return
    texts = generate(args.n, args.seed)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(texts))
    runs = {}
    for mode in ("numeric", "default_gc", "sympy", "profile"):
        out = subprocess.run([sys.executable, __file__, "--child", mode, f.name], check=True,
                             capture_output=True, text=True).stdout
        runs[mode] = json.loads(out)
    import torch

    import exprsearch
    result = {"benchmark": "bench_canon", "goal_expr_per_s": 20_000, "n": args.n, "seed": args.seed,
              "numeric_only": runs["numeric"], "numeric_only_default_gc": runs["default_gc"],
              "with_sympy_labels": runs["sympy"],
              "profile_top_self_time": runs["profile"],
              "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                          "torch": torch.__version__, "exprsearch": exprsearch.__version__, "cores_used": 1}}
    write_json(OUT, result)
    s = runs["numeric"]
    print(f"{s['expressions']} expressions: {s['expr_per_s']:,.0f} expr/s end to end on one core "
          f"(parse {s['seconds']['parse']:.2f}s, validate {s['seconds']['validate']:.2f}s, "
          f"canonicalize {s['seconds']['canonicalize']:.2f}s, dedup {s['seconds']['dedup']:.2f}s); "
          f"{s['classes']} classes, proofs {s['proofs']}, collisions {s['collisions']}; with sympy "
          f"labels {runs['sympy']['expr_per_s']:,.0f} expr/s, default GC "
          f"{runs['default_gc']['expr_per_s']:,.0f} expr/s -> {OUT}")
    os.unlink(f.name)


if __name__ == "__main__":
    main()
