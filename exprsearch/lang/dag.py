"""AST --> networkx DAG: shared subexpressions merged, for inspection and counting.

Input: an expression or model spec.  Output: a ``networkx.DiGraph`` with one node per distinct
subexpression (interning makes "distinct" mean "distinct object"), edges parent -> child labelled
with the argument index.  Invariant: the graph is acyclic and has one root per layer.

>>> from .validity import parse_one
>>> g = to_dag(parse_one("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"))
>>> dag_stats(g)["nodes"], dag_stats(g)["shared"]
(7, 1)
"""
from __future__ import annotations

from typing import Any

import networkx as nx

from .expr import Expr, ModelSpec

__all__ = ["to_dag", "dag_stats"]


def to_dag(e: Expr | ModelSpec) -> nx.DiGraph:
    roots = list(e.layers) if isinstance(e, ModelSpec) else [e]
    g = nx.DiGraph()
    ids: dict[Expr, int] = {}
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in ids:
            continue
        ids[n] = len(ids)
        g.add_node(ids[n], op=n.name, kind=n.op.kind.value, text=str(n))
        stack.extend(n.args)
    for n, i in ids.items():
        for k, a in enumerate(n.args):
            g.add_edge(i, ids[a], arg=k)
    g.graph["roots"] = [ids[r] for r in roots]
    return g


def dag_stats(g: nx.DiGraph) -> dict[str, Any]:
    """Node/edge counts, depth (longest path, slots included) and shared nodes (in-degree > 1)."""
    return {"nodes": g.number_of_nodes(), "edges": g.number_of_edges(),
            "depth": nx.dag_longest_path_length(g) if g.number_of_nodes() else 0,
            "shared": sum(1 for _, d in g.in_degree() if d > 1),
            "ops": sorted({d["op"] for _, d in g.nodes(data=True) if d["kind"] not in ("var", "slot")})}
