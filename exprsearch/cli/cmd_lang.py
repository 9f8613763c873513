"""``exprsearch parse | canon | space``: the expression language from the command line."""
from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from importlib import resources
from typing import Any

from exprsearch.errors import DSLError, ExprSearchError, check_number
from exprsearch.lang.canon import canonicalize
from exprsearch.lang.dag import dag_stats, to_dag
from exprsearch.lang.dedup import Deduper
from exprsearch.lang.display import ast_tree, table
from exprsearch.lang.numeric import fingerprint
from exprsearch.lang.parsing import parse
from exprsearch.lang.validity import width_of
from exprsearch.space.generate import Space, count, enumerate_space, sample

from .checks import check_count, check_space
from .common import as_file
from .main import command, emit
from .options import add_dataclass_args, from_args, to_dict


def _describe(e, strict: bool) -> dict:
    c = canonicalize(e)
    lin = e.linears()
    return {"expression": str(e), "canonical": str(c), "valid": "strict" if strict else "relaxed",
            "size": e.size, "depth": e.depth, "width": width_of(e), "dag": dag_stats(to_dag(e)),
            "linears": sorted({f"{n.name}: X={n.op.blocks} block(s), d=D/{n.op.ratio}" for n in lin}),
            "fingerprint": fingerprint(c)}


def _parse_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("expr", help="an FFN expression, e.g. 'linear1_1(gelu(linear1_1(x,wb1)),wb2)'")
    p.add_argument("--relaxed", action="store_true", help="apply the relaxed validity rules")


@command("parse", "parse and validate one expression; show its AST, canonical form and stats")(_parse_options)
def cmd_parse(ns: argparse.Namespace) -> int:
    e = parse(ns.expr, strict=not ns.relaxed)
    info = _describe(e, not ns.relaxed)
    dag = info["dag"]
    human = "\n".join([
        f"expression   {info['expression']}",
        f"valid        yes ({info['valid']} rules)",
        f"canonical    {info['canonical']}",
        f"size/depth   {e.size} nodes / depth {e.depth}   output width {info['width']}",
        f"dag          {dag['nodes']} distinct nodes, {dag['shared']} shared, ops {', '.join(dag['ops'])}",
        f"linears      {'; '.join(info['linears']) or '-'}",
        f"fingerprint  {info['fingerprint']}",
        "ast", ast_tree(e)])
    emit(ns, human, info)
    return 0


@dataclass(frozen=True)
class _Item:
    source: str
    text: str
    origin: str | None = None
    line: int = 0


def _read_inputs(args: list[str]) -> list[_Item]:
    items: list[_Item] = []
    if not args:
        examples = resources.files("exprsearch").joinpath("data/examples.ffn")
        print(f"(no input given: canonicalising the bundled examples, {examples})", file=sys.stderr)
        args = [str(examples)]
    for a in args:
        path = as_file(a)
        if a == "-" or path is not None:
            try:
                text = sys.stdin.read() if path is None else path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise ExprSearchError(f"cannot read {a}: {err}") from None
            name = "<stdin>" if path is None else path.name
            for i, line in enumerate(text.splitlines(), 1):
                if line.strip() and not line.lstrip().startswith("#"):
                    items.append(_Item(f"{name}:{i}", line, name, i - 1))
        else:
            items.append(_Item("arg", a))
    return items


def _canon_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", help="expressions or files with one expression per line "
                   "('-' reads stdin); none: the bundled examples")
    p.add_argument("--relaxed", action="store_true", help="apply the relaxed validity rules")
    p.add_argument("--base-ratio", type=float, default=1.0, help="D / H of the model (default 1)")
    p.add_argument("--no-sympy", action="store_true", help="decide fingerprint matches numerically only")
    p.add_argument("--sympy-seconds", type=float, default=30.0, help="sympy's time in all, once per expression; "
                   "past it the numeric probes decide alone (default 30)")


@command("canon", "canonical form and dedup groups of expressions")(_canon_options)
def cmd_canon(ns: argparse.Namespace) -> int:
    check_number(ns, "base_ratio", above=0, most=64)
    check_number(ns, "sympy_seconds", least=0, most=86_400)
    dd = Deduper(base_ratio=ns.base_ratio, use_sympy=not ns.no_sympy, full_proofs=not ns.no_sympy,
                 sympy_seconds=ns.sympy_seconds)
    rows: list[list[Any]] = []
    records: list[dict[str, Any]] = []
    errors: list[str] = []
    first: dict[str, int] = {}
    for item in _read_inputs(ns.inputs):
        try:
            e = parse(item.text, strict=not ns.relaxed)
        except DSLError as err:
            err.origin, err.line_offset = item.origin, item.line
            errors.append(f"{item.source}: {err}" if item.origin is None else str(err))
            continue
        r = dd.add(e)
        n = len(records) + 1
        first.setdefault(r.key, n)
        status = "new" if r.is_new else f"= #{first[r.key]} ({r.proof})"
        rows.append([n, item.source, str(r.canonical), status])
        records.append({"n": n, "source": item.source, "input": item.text.strip(),
                        "canonical": str(r.canonical), "key": r.key, "new": r.is_new, "proof": r.proof})
    for msg in errors:
        print(f"error: {msg}", file=sys.stderr)
    groups: dict[str, list[str]] = {}
    for rec in records:
        groups.setdefault(rec["key"], []).append(f"#{rec['n']} {rec['source']}")
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    summary = {"expressions": len(records), "classes": len(dd), "invalid": len(errors),
               "duplicates": len(records) - len(dd), "proofs": dd.proofs, "collisions": dd.collisions,
               "sympy_seconds": round(dd.sympy_spent, 2)}
    lines = [table(rows, ["#", "source", "canonical form", "class"]), "",
             f"{len(records)} expressions, {len(dd)} distinct candidates, "
             f"{summary['duplicates']} duplicates (identical canonical form {dd.proofs['identical']}, "
             f"sympy {dd.proofs['sympy']}, numeric {dd.proofs['numeric']}), "
             f"{dd.collisions} fingerprint collisions, {len(errors)} invalid"
             + (f"; sympy {dd.sympy_spent:.1f} s (budget {ns.sympy_seconds:g} s)" if dd.sympy_spent >= 1 else "")]
    if groups:
        lines += ["", "dedup groups:"] + [f"  {k}\n    {', '.join(v)}" for k, v in groups.items()]
    emit(ns, "\n".join(lines), {"items": records, "groups": groups, "summary": summary,
                                "errors": errors})
    return 2 if errors else 0


def _space_options(p: argparse.ArgumentParser) -> None:
    add_dataclass_args(p, Space)
    p.add_argument("--samples", type=int, default=5, help="uniform samples to show (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--distinct", action=argparse.BooleanOptionalAction, default=True,
                   help="enumerate to count distinct canonical candidates (default on)")
    p.add_argument("--limit", type=int, default=200_000,
                   help="largest number of trees to enumerate (default 200,000)")


def distinct_count(sp: Space, use_sympy: bool = False) -> dict:
    """Exact number of distinct candidates: enumerate every tree, dedup by canonical form and
    fingerprint.  X never changes equivalence, so each Y is enumerated once with X = first choice
    and the count is multiplied by the number of X choices."""
    per_ratio, identical = {}, 0
    x0 = sp.blocks[0]
    for y in sp.ratios:
        dd = Deduper(base_ratio=1.0, use_sympy=use_sympy)
        from exprsearch.lang.ops import linear_op
        for e in enumerate_space(sp, xy=[linear_op(x0, y)]):
            dd.add(e)
        per_ratio[y] = len(dd)
        identical += dd.proofs["identical"]
    return {"distinct": len(sp.blocks) * sum(per_ratio.values()), "per_ratio_per_X": per_ratio}


@command("space", "size of a search space (exact), distinct candidates, uniform samples")(_space_options)
def cmd_space(ns: argparse.Namespace) -> int:
    sp = from_args(Space, ns)
    check_space(sp)
    check_count("samples", ns.samples, 0, 100_000)
    check_count("limit", ns.limit, 1, 100_000_000)
    total = count(sp)
    rng = random.Random(ns.seed)
    samples = [str(sample(sp, rng)) for _ in range(max(0, ns.samples))]
    out: dict = {"space": to_dict(sp), "trees": total, "samples": samples}
    lines = [f"space        {to_dict(sp)}", f"valid trees  {total:,} (exact)"]
    if ns.distinct:
        if total > ns.limit:
            lines.append(f"distinct     not enumerated: {total:,} trees > --limit {ns.limit:,}")
        else:
            d = distinct_count(sp)
            out.update(d)
            lines.append(f"distinct     {d['distinct']:,} canonical candidates "
                         f"({total / max(1, d['distinct']):.2f} trees per candidate)")
    lines += ["samples (uniform over trees):"] + [f"  {s}" for s in samples]
    emit(ns, "\n".join(lines), out)
    return 0


