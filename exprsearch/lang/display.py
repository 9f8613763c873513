"""values --> text for people: AST trees and aligned tables.

>>> from .validity import parse_one
>>> print(ast_tree(parse_one("linear1_1(gelu(linear1_1(x,wb1)),wb2)")))
linear1_1
├── gelu
│   └── linear1_1
│       ├── x
│       └── wb1
└── wb2
>>> print(table([["a", 1], ["bb", 22]], ["name", "n"]))
name   n
----  --
a      1
bb    22
"""
from __future__ import annotations

from typing import Any, Sequence

from .expr import Expr

__all__ = ["ast_tree", "table"]


def ast_tree(e: Expr) -> str:
    lines = [e.name]

    def go(n: Expr, prefix: str) -> None:
        for i, a in enumerate(n.args):
            last = i == len(n.args) - 1
            lines.append(prefix + ("└── " if last else "├── ") + a.name)
            go(a, prefix + ("    " if last else "│   "))

    go(e, "")
    return "\n".join(lines)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Left-aligned text columns, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    numeric = [all(isinstance(r[i], (int, float)) for r in rows if r[i] is not None)
               for i in range(len(headers))]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def fmt(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(r, widths, numeric)).rstrip()

    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]])
