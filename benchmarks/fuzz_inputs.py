"""The inputs of ``fuzz_lang.py``: what a hostile user (or a careless one) types.

Input: a count and a seed.  Output: (source, text, what the source expects) triples -- uniform
samples of the reference and extended spaces, the same scrambled by identities of real arithmetic,
near misses, towers of square/sqrelu of depth k and k+1 under a bounded op, text mutants, spec
files whose comments hold parentheses (expecting their number of layers), long chains and
injection payloads.  Invariant: the same count and seed give the same inputs.

>>> [src for src, _, _ in inputs(5, seed=1)] == [src for src, _, _ in inputs(5, seed=1)]
True
"""
from __future__ import annotations

import random
import re
import sys
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exprsearch import Space, mutate, sample  # noqa: E402
from exprsearch.lang.expr import Expr, node  # noqa: E402
from exprsearch.lang.ops import OPS, Kind  # noqa: E402

__all__ = ["inputs", "TEMPLATES", "PAYLOADS"]

UNARY = [o.name for o in OPS.values() if o.kind is Kind.UNARY]
BINARY = [o.name for o in OPS.values() if o.kind is Kind.BINARY]
EXT = Space(unary=tuple(UNARY), binary=tuple(BINARY), max_depth=6, max_size=8)
REF = Space()
SIMILAR = {"gelu": ["swish", "elu", "relu"], "swish": ["gelu", "sigmoid"], "relu": ["leaky_relu", "sqrelu", "elu"],
           "leaky_relu": ["relu", "elu"], "elu": ["leaky_relu", "gelu"], "tanh": ["sigmoid", "elu"],
           "sigmoid": ["tanh", "swish"], "square": ["sqrelu", "sqrt_abs"], "sqrelu": ["square", "relu"],
           "neg": ["relu", "sqrt_abs"], "sqrt_abs": ["square", "neg"], "add": ["sub", "max", "mul"],
           "mul": ["add", "max"], "max": ["min", "add"], "min": ["max", "sub"], "sub": ["add", "min"]}
PAYLOADS = ["__import__('os').system('touch /tmp/pwned')", "<script>alert(1)</script>", "$(touch /tmp/pwned)",
            "`id`", "'; DROP TABLE runs; --", "\x00", "../../../../etc/passwd", "{{7*7}}", "%s%s%s%n",
            "${jndi:ldap://x}", "eval('1')", "x\x1b[2J", "\u202egelu(x)", "gelu(x)\r\nlinear1_1(x,wb1)",
            "lambda: 0", "exec", "os.system", "x" * 5000, "(" * 150 + "x" + ")" * 150, "\ufeffgelu(x)"]
TEMPLATES = ["linear1_4(mul(linear1_4(x,wb1),{b}({t})),wb2)", "linear1_2(add(linear1_2(x,wb1),{b}({t})),wb2)",
             "linear2_1(gelu(linear2_1(mul(x,{b}({t})),wb1)),wb2)", "linear1_3(max(linear1_3(x,wb1),{b}({t})),wb2)",
             "linear1_1(gelu(linear1_1(add(x,{b}({t})),wb1)),wb2)", "{b}(linear1_2(linear1_2({t},wb1),wb2))"]
LEAVES = ["x", "tanh(x)", "sigmoid(x)", "relu(x)", "gelu(x)", "elu(x)", "square(x)", "neg(x)"]
DSL_CHARS = "()[],;# \t\n_0123456789xwbl" + "abcdefghijklmnopqrstuvwxyz" + "XY😀\x00é"
_TOKEN = re.compile(r"[A-Za-z0-9_]+|\s+|.", re.S)
TOKENS = list(OPS) + ["(", ")", ",", ";", "[", "]", " ", "\n", "# (c\n", "linear5_1", "wb", "gleu", "_", "1"]


def _scramble(e: Expr, rng: random.Random) -> Expr:
    """``e`` rewritten by identities of real arithmetic (an equal function, other text)."""
    args = [_scramble(a, rng) if a.kind is not Kind.SLOT else a for a in e.args]
    if e.op.commutative and rng.random() < 0.5:
        args.reverse()
    n = node(e.op, *args)
    if n.kind is Kind.SLOT or rng.random() > 0.25:
        return n
    moves = [lambda: node(rng.choice(["max", "min"]), n, n), lambda: node("neg", node("neg", n))]
    if n.op.nonneg:
        moves.append(lambda: node("relu", n))
    if n.op.name == "square":
        moves.append(lambda: node("mul", n.args[0], n.args[0]))
    if n.op.name == "add" and n.args[0].op.name == "add":  # (a + b) + c -> a + (b + c)
        moves.append(lambda: node("add", n.args[0].args[0], node("add", n.args[0].args[1], n.args[1])))
    return rng.choice(moves)()


def _near_miss(e: Expr, rng: random.Random) -> Expr:
    """``e`` with one small change that (almost always) makes another function."""
    paths = [p for p, n in e.walk_paths() if n.op.name in SIMILAR or n.kind is Kind.UNARY]
    if not paths:
        return e
    p = rng.choice(paths)
    n = e.at(p)
    r = rng.random()
    if n.op.name == "sub" and r < 0.3:
        new = node("sub", n.args[1], n.args[0])
    elif n.kind is Kind.UNARY and r < 0.5:
        new = node(n.op, n)  # one more level
    else:
        new = node(rng.choice(SIMILAR.get(n.op.name, [n.op.name])), *n.args)
    return e.replace_at(p, new)


def _tower(rng: random.Random) -> list[str]:
    op, base = rng.choice([("square", "x"), ("sqrelu", "x"), ("square", "tanh(x)"), ("sqrelu", "add(x,x)"),
                           ("square", "gelu(x)")])
    k = rng.randint(2, 20)
    t = rng.choice(TEMPLATES)
    b = rng.choice(["sigmoid", "tanh", "elu", "gelu", "swish", "sqrt_abs", "neg"])
    out = []
    for depth in (k, k + 1):
        inner = base
        for _ in range(depth):
            inner = f"{op}({inner})"
        out.append(t.format(b=b, t=inner))
    return out


def _mutant(s: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 3)):
        kind, i = rng.randrange(6), rng.randrange(len(s) + 1)
        if kind == 0:
            s = s[:i] + rng.choice(DSL_CHARS) + s[i:]
        elif kind == 1 and s:
            s = s[:min(i, len(s) - 1)] + s[min(i, len(s) - 1) + 1:]
        else:
            toks = _TOKEN.findall(s) or [""]
            j = rng.randrange(len(toks))
            if kind == 2:
                toks[j] = rng.choice(TOKENS)
            elif kind == 3:
                k = rng.randrange(len(toks))
                toks[j], toks[k] = toks[k], toks[j]
            elif kind == 4:
                del toks[j]
            else:
                toks[j:j] = toks[j:rng.randrange(j, len(toks) + 1)]
            s = "".join(toks)
    return s


def _chain(rng: random.Random) -> str:
    op, n = rng.choice(["add", "max", "min"]), rng.choice([rng.randint(2, 12), rng.randint(13, 400)])
    items = [rng.choice(LEAVES) for _ in range(n)]
    while len(items) > 1:  # a random binary tree over the leaves
        i = rng.randrange(len(items) - 1)
        items[i:i + 2] = [f"{op}({items[i]},{items[i + 1]})"]
    return f"linear1_1(gelu(linear1_1({items[0]},wb1)),wb2)"


def _spec(rng: random.Random) -> tuple[str, int]:
    n = rng.randint(1, 5)
    lines = [str(sample(REF, rng)) for _ in range(n)]
    junk = lambda: "# " + "".join(rng.choice("()[];#,x abc") for _ in range(rng.randint(0, 12)))  # noqa: E731
    out = [junk()] if rng.random() < 0.5 else []
    for line in lines:
        out.append(line + ("  " + junk() if rng.random() < 0.7 else ""))
        if rng.random() < 0.3:
            out.append(junk())
    return "\n".join(out) + "\n", n


def inputs(n: int, seed: int) -> Iterator[tuple[str, str, Any]]:
    """(source, text, what the source expects) for n inputs."""
    rng = random.Random(seed)
    weights = {"sample": 15, "scramble": 20, "near_miss": 15, "tower": 10, "mutant": 25, "spec": 5, "chain": 5,
               "payload": 5}
    names, w = list(weights), list(weights.values())
    pool: list[Expr] = []
    made = 0
    while made < n:
        src = rng.choices(names, w)[0]
        sp = REF if rng.random() < 0.6 else EXT
        if src in ("sample", "scramble", "near_miss", "mutant"):
            e = sample(sp, rng) if not pool or rng.random() < 0.5 else rng.choice(pool)
            if len(pool) < 2000:
                pool.append(e)
            if src == "sample":
                batch = [str(e if rng.random() < 0.7 else mutate(e, sp, rng)[0])]
            elif src == "scramble":
                batch = [str(e), str(_scramble(e, rng))]
            elif src == "near_miss":
                batch = [str(e), str(_near_miss(e, rng))]
            else:
                batch = [_mutant(str(e), rng)]
            items = [(src, t, None) for t in batch]
        elif src == "tower":
            items = [(src, t, None) for t in _tower(rng)]
        elif src == "spec":
            text, layers = _spec(rng)
            items = [(src, text, layers)]
        elif src == "chain":
            items = [(src, _chain(rng), None)]
        else:
            p = rng.choice(PAYLOADS)
            items = [(src, rng.choice([p, f"linear1_1(gelu(linear1_1({p},wb1)),wb2)", f"gelu({p})", p + "\n" + p]),
                      None)]
        for item in items[:n - made]:
            made += 1
            yield item
