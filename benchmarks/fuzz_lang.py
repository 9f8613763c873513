"""Fuzzing the expression language as a hostile user would (issue 31): crashes, hangs, canonical
forms that are invalid or do not re-parse, spec files read wrong, and false merges.

Inputs (``fuzz_inputs.py``), drawn by a seeded generator: uniform samples of the reference and
extended spaces, the same expressions scrambled by identities (operand swaps, max(a,a), relu of a nonnegative term,
neg(neg(a)), mul(a,a) for square(a), re-associated chains), near misses (one operator changed for
a similar one, one more level of nesting, sub's operands swapped), towers of square/sqrelu of depth
k and k+1 under a bounded op, text mutants (characters and tokens inserted, deleted, swapped),
spec files whose comments hold parentheses, long add/max/min chains, and injection payloads.
Each input is parsed (strictly, else relaxed), canonicalised and added to one ``Deduper`` as the
search builds it (numeric probes only), every input under a deadline of 10 s of this process's CPU
time (wall-clock time on a shared machine also counts other processes' work), with the time the
cyclic garbage collector took during it recorded beside each slow input.  Checked: only
``ExprSearchError`` escapes (else a crash); a valid input's canonical form is valid under the same
rules, re-parses to itself and is a fixpoint; a spec file has as many layers as it has expression
lines; and every merge that is not an identical canonical form (and every tenth that is) is
checked by ``Oracle`` -- an evaluator independent of the fingerprint: 40-digit mpmath arithmetic
(the op table's sympy semantics), its own weights, and points the probes never use (rows of x
near |x| = 1, where towers differ, beside rows at scales 0.3 to 30).  A merged pair that differs
there by more than 1e-9 (relative) is a false merge.

    python benchmarks/fuzz_lang.py [--n 100000] [--seed 0] [--out benchmarks/results/fuzz_lang.json]

The test suite runs ``run(n=...)`` with a small budget (tests/test_fuzz_lang.py).
"""
from __future__ import annotations

import argparse
import gc
import json
import random
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mpmath  # noqa: E402
import sympy  # noqa: E402
from fuzz_inputs import inputs  # noqa: E402

from exprsearch.errors import ExprSearchError  # noqa: E402
from exprsearch.lang.canon import canonicalize  # noqa: E402
from exprsearch.lang.dedup import Deduper  # noqa: E402
from exprsearch.lang.expr import Expr  # noqa: E402
from exprsearch.lang.ops import OPS, Kind  # noqa: E402
from exprsearch.lang.parsing import parse, parse_spec  # noqa: E402
from exprsearch.lang.validity import is_valid  # noqa: E402
from exprsearch.lang.widths import INNER_SLOTS, binary_width  # noqa: E402

OUT = Path(__file__).parent / "results" / "fuzz_lang.json"
DEADLINE_S = 10.0
class Oracle:
    """Values of an expression in 40-digit arithmetic at its own points and weights (H = 8,
    D = H as in the Deduper at ratio 1): independent of the probes, the fingerprint and torch."""

    def __init__(self, seed: int = 12345, hidden: int = 8, rows: int = 24) -> None:
        mpmath.mp.dps = 40
        rng = random.Random(seed)
        mpf, h = mpmath.mpf, hidden
        self.hidden = h
        g = lambda s=1.0: mpf(rng.gauss(0, 1)) * mpf(s)  # noqa: E731
        xs = [[g(s) for _ in range(h)] for s in (0.3, 1, 3, 10, 30, 0.01)]
        for u in range(1, 5):  # near |x| = 1: x^(2^k) is neither ~0 nor ~inf only there
            xs += [[(1 if rng.random() < 0.5 else -1) * (1 + g(10.0 ** -u)) for _ in range(h)] for _ in range(4)]
        xs += [[mpf(1) + g(1e-3) for _ in range(h)] for _ in range(rows - len(xs))]
        self.x = xs
        self.w = {s: [[g(1 / h ** 0.5) for _ in range(h)] for _ in range(h)] for s in ("wb1", "wb2", "wb3")}
        self.b = {s: [g(0.1) for _ in range(h)] for s in ("wb1", "wb2", "wb3")}
        a, b = sympy.symbols("a b", real=True)
        self.fn: dict[str, Callable[..., Any]] = {}
        for o in OPS.values():
            if o.kind is Kind.UNARY:
                f = o.sympy_fn(a)
                self.fn[o.name] = _tamed(sympy.lambdify([a], f, "mpmath")) if f.has(sympy.exp, sympy.erf, sympy.tanh) \
                    else sympy.lambdify([a], f, "mpmath")
            elif o.kind is Kind.BINARY:
                self.fn[o.name] = sympy.lambdify([a, b], o.sympy_fn(a, b), "mpmath")
        self._memo: dict[Expr, list[list[Any]]] = {}

    def values(self, e: Expr) -> list[list[Any]]:
        if e in self._memo:
            return self._memo[e]
        k = e.op.kind
        if k is Kind.VAR:
            out = self.x
        elif k is Kind.LINEAR:
            v, slot = self.values(e.args[0]), e.args[1].name
            h = self.hidden
            d = max(1, h // e.op.ratio)
            n_out, n_in = (d, h) if slot in INNER_SLOTS else (h, d)
            w, bias = self.w[slot], self.b[slot]
            out = [[bias[j] + mpmath.fsum(w[j][c] * row[c] for c in range(min(len(row), n_in))) for j in range(n_out)]
                   for row in v]
        elif k is Kind.UNARY:
            f = self.fn[e.op.name]
            out = [[f(t) for t in row] for row in self.values(e.args[0])]
        else:
            f, va, vb = self.fn[e.op.name], self.values(e.args[0]), self.values(e.args[1])
            out = [[f(p, q) for p, q in zip(ra[:binary_width(len(ra), len(rb))], rb)] for ra, rb in zip(va, vb)]
        if len(self._memo) > 20_000:
            self._memo.clear()
        self._memo[e] = out
        return out

    def difference(self, a: Expr, b: Expr) -> float:
        """The largest difference of ``a`` and ``b``, relative to max(1, |value|)."""
        va, vb = self.values(a), self.values(b)
        if [len(r) for r in va] != [len(r) for r in vb]:
            return float("inf")
        worst = mpmath.mpf(0)
        for ra, rb in zip(va, vb):
            for p, q in zip(ra, rb):
                worst = max(worst, abs(p - q) / max(1, abs(p), abs(q)))
        return float(worst)


def _tamed(f: Callable[[Any], Any], far: float = 1e4) -> Callable[[Any], Any]:
    """``f`` (exp, erf or tanh inside) past |a| = ``far`` continued along its slope there: exact to
    e^-far, and mpmath is not asked for exp(-10^1000000) (it reduces such an argument for minutes)."""
    def g(t: Any) -> Any:
        if abs(t) <= far:
            return f(t)
        edge = far if t > 0 else -far
        return f(edge) + (t - edge) * (f(edge) - f(edge - (1 if t > 0 else -1)))
    return g


class _Hang(BaseException):
    """An input ran past its deadline (a BaseException: nothing under test may swallow it)."""


def _alarm(signum: int, frame: object) -> None:
    raise _Hang()


# -- the run ---------------------------------------------------------------------------------

def run(n: int = 2000, seed: int = 0, log: Callable[[str], None] = lambda m: None,
        identical_every: int = 10) -> dict[str, Any]:
    """Fuzz ``n`` inputs; the counts and the first examples of every kind of failure."""
    r: dict[str, Any] = {"inputs": 0, "by_source": {}, "parsed_strict": 0, "parsed_relaxed": 0,
                         "rejected": 0, "crashes": 0, "hangs": 0, "slowest_s": 0.0, "slowest_cpu_s": 0.0,
                         "longest_gc_s": 0.0,
                         "canonical_checked": 0, "canonical_invalid": 0, "canonical_not_reparsing": 0,
                         "canonical_not_fixpoint": 0, "specs_checked": 0, "spec_layer_mismatch": 0,
                         "merges": {"identical": 0, "numeric": 0, "sympy": 0}, "merges_checked": 0,
                         "identical_checked": 0, "false_merges": 0, "near_merges": 0, "examples": {}}
    dd, oracle, reps = Deduper(use_sympy=False), Oracle(), {}
    t_start = time.perf_counter()
    old = signal.signal(signal.SIGPROF, _alarm)
    gc_time = [0.0, 0.0]  # in this input, start of the running collection

    def gc_clock(phase: str, info: dict) -> None:
        if phase == "start":
            gc_time[1] = time.perf_counter()
        else:
            pause = time.perf_counter() - gc_time[1]
            gc_time[0] += pause
            r["longest_gc_s"] = max(r["longest_gc_s"], round(pause, 3))

    gc.callbacks.append(gc_clock)

    def example(kind: str, text: str, detail: str = "") -> None:
        r["examples"].setdefault(kind, [])
        if len(r["examples"][kind]) < 10:
            r["examples"][kind].append({"input": text[:300], "detail": detail[:500]})

    def one(src: str, text: str, expect: Any) -> None:
        if src == "spec":
            r["specs_checked"] += 1
            try:
                spec = parse_spec(text)
            except ExprSearchError as err:  # every generated spec is valid
                r["spec_layer_mismatch"] += 1
                example("spec_layer_mismatch", text, str(err))
                return
            lines = [ln.split("#")[0].strip() for ln in text.splitlines()]
            want = [str(parse(ln)) for ln in lines if ln]
            if len(spec) != expect or [str(e) for e in spec] != want:
                r["spec_layer_mismatch"] += 1
                example("spec_layer_mismatch", text, f"{len(spec)} layers, expected {expect}")
            return
        try:
            e, strict = parse(text), True
        except ExprSearchError:
            e, strict = parse(text, strict=False), False
        r["parsed_strict" if strict else "parsed_relaxed"] += 1
        c = canonicalize(e)
        r["canonical_checked"] += 1
        if not is_valid(c, strict=strict):
            r["canonical_invalid"] += 1
            example("canonical_invalid", text, str(c))
        elif parse(str(c), strict=strict) is not c:
            r["canonical_not_reparsing"] += 1
            example("canonical_not_reparsing", text, str(c))
        if canonicalize(c) is not c:
            r["canonical_not_fixpoint"] += 1
            example("canonical_not_fixpoint", text, str(c))
        res = dd.add(e)
        if res.is_new:
            reps[res.key] = e
            return
        r["merges"][res.proof] += 1
        if res.proof == "identical":
            if r["merges"]["identical"] % identical_every:
                return
            r["identical_checked"] += 1
        else:
            r["merges_checked"] += 1
        diff = oracle.difference(e, reps[res.key])
        if diff > 1e-9:
            r["false_merges"] += 1
            example("false_merges", text, f"merged ({res.proof}) with {res.key}; differs by {diff:.3g}")
        elif diff > 1e-25:
            r["near_merges"] += 1
            example("near_merges", text, f"merged ({res.proof}) with {res.key}; differs by {diff:.3g}")

    try:
        for i, (src, text, expect) in enumerate(inputs(n, seed)):
            r["inputs"] += 1
            r["by_source"][src] = r["by_source"].get(src, 0) + 1
            t0, c0, gc_time[0] = time.perf_counter(), time.process_time(), 0.0
            signal.setitimer(signal.ITIMER_PROF, DEADLINE_S)
            try:
                one(src, text, expect)
            except _Hang:
                r["hangs"] += 1
                example("hangs", text, f"over {DEADLINE_S:g} s of CPU time ({gc_time[0]:.1f} s in the GC)")
            except ExprSearchError:
                r["rejected"] += 1
            except Exception as err:  # noqa: BLE001 - the point: count what escapes
                r["crashes"] += 1
                example("crashes", text, "".join(traceback.format_exception_only(type(err), err)).strip())
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if wall > r["slowest_s"]:
                r["slowest_s"], r["slowest"] = round(wall, 3), {"input": text[:300], "cpu_s": round(cpu, 3),
                                                                "gc_s": round(gc_time[0], 3)}
            r["slowest_cpu_s"] = max(r["slowest_cpu_s"], round(cpu, 3))
            if (i + 1) % 5000 == 0:
                log(f"{i + 1:,}/{n:,} inputs, {time.perf_counter() - t_start:.0f} s: crashes {r['crashes']}, "
                    f"hangs {r['hangs']}, false merges {r['false_merges']}, canonical invalid {r['canonical_invalid']}")
    finally:
        signal.signal(signal.SIGPROF, old)
        gc.callbacks.remove(gc_clock)
    r["classes"] = len(dd)
    r["collisions"] = dd.collisions
    r["seconds"] = round(time.perf_counter() - t_start, 1)
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="inputs to try (default 100,000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    import platform

    import torch

    from exprsearch import tune_gc
    torch.set_num_threads(1)
    tune_gc()  # as the command line does
    result = {"benchmark": "fuzz_lang", "n": args.n, "seed": args.seed, "deadline_s": DEADLINE_S,
              "python": platform.python_version(), "torch": torch.__version__,
              **run(args.n, args.seed, log=lambda m: print(m, file=sys.stderr, flush=True))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    bad = result["crashes"] + result["hangs"] + result["false_merges"] + result["canonical_invalid"] + \
        result["canonical_not_reparsing"] + result["canonical_not_fixpoint"] + result["spec_layer_mismatch"]
    print(json.dumps({k: v for k, v in result.items() if k != "examples"}, indent=2))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
