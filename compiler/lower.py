"""validated AST --> torch.fx.GraphModule: one FFN (X stacked blocks) of one layer.

Input: an expression and an ``FFNConfig`` (H, D, dropout, LayerNorm eps).  Output: a
``GraphModule`` mapping ``x`` (..., H) to (..., H).  The graph is built node by node -- one
placeholder for ``x``, one ``call_function`` per operator with its target taken from the op table,
``torch.nn.functional.linear`` on ``get_attr`` weights for each linear -- never by formatting
source.  Invariants kept (``verify_graph`` checks them): every tensor's channel width is known at
compile time, binary operands of different widths are cut to the narrower (``x[..., :w]``), and
the output is H wide.

Semantics (the reference's, see docs/reference_notes.md): X = the linears' stack count; each of
the X blocks applies the whole expression with its own weights, then ``LN(h + Dropout(expr(h)))``
(post-LN residual, like BERT's FFN).  ``wb1`` maps the input width to d = D // Y, ``wb2`` maps its
input width (normally d) to H, a gated FFN's ``wb3`` (its gate) maps its input width to d like
``wb1``, with an ``nn.Linear`` of its own; identical subexpressions are computed once (the DAG).
A relaxed expression with several distinct ``wb1`` (or ``wb2``, ``wb3``) linears gives each its
own weights.

>>> import torch, exprsearch as es
>>> gm = lower(es.parse("linear1_1(gelu(linear1_1(x,wb1)),wb2)"), FFNConfig(hidden=8, base_width=32))
>>> gm(torch.randn(2, 3, 8)).shape
torch.Size([2, 3, 8])
>>> [tuple(p.shape) for p in gm.parameters()]
[(32, 8), (32,), (8, 32), (8,), (8,), (8,)]
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from exprsearch.errors import ExprSearchError
from exprsearch.lang.expr import Expr
from exprsearch.lang.ops import Kind
from exprsearch.lang.widths import linear_width, node_widths

from .hf.modeling_exprbert import ExprBertFFNBlock as Block  # one block's parameters: the shipped model's own class

__all__ = ["FFNConfig", "Block", "block", "lower", "slot_instances", "verify_graph", "CompileError", "blocks_of"]


class CompileError(ExprSearchError):
    """An expression cannot be lowered (e.g. its output is not H wide)."""


@dataclass(frozen=True)
class FFNConfig:
    """Shapes of the FFN being compiled."""

    hidden: int = 384                # H: the model width
    base_width: int | None = None    # D: base FFN width (None: D = H, as in EfficientBERT)
    dropout: float = 0.1             # dropout on each block's expression output
    ln_eps: float = 1e-12            # LayerNorm epsilon (BERT's)

    @property
    def D(self) -> int:
        return self.base_width or self.hidden

    def inner(self, ratio: int) -> int:
        """d = D // Y (the language's width rule)."""
        return linear_width("wb1", ratio, self.hidden, self.D)


def block(gm: nn.Module, b: int) -> Any:
    """Block ``b`` of a lowered FFN or a SuperFFN (a GraphModule keeps ``blocks`` as a plain Module): a
    ``Block``, or a module of the same layout; its linears are known by name only (``wb1``, ...)."""
    return getattr(gm.blocks, str(b))


def blocks_of(e: Expr) -> int:
    """X: stacked blocks (from the linears; 1 for a linear-free relaxed expression)."""
    lins = e.linears()
    return lins[0].op.blocks if lins else 1


def slot_instances(e: Expr, cfg: FFNConfig) -> dict[Expr, tuple[str, int, int]]:
    """Each distinct linear node -> (parameter name, out features, in features), in first-use order.

    Names are the slot (``wb1``, ``wb2``, ``wb3``), then ``wb1_2``, ``wb1_3`` ... for further distinct
    linears of the same slot (relaxed expressions only)."""
    widths = _widths(e, cfg)
    out: dict[Expr, tuple[str, int, int]] = {}
    seen: dict[str, int] = {}
    for n in _postorder(e):
        if n.kind is Kind.LINEAR and n not in out:
            slot = n.args[1].name
            seen[slot] = seen.get(slot, 0) + 1
            name = slot if seen[slot] == 1 else f"{slot}_{seen[slot]}"
            out[n] = (name, widths[n], widths[n.args[0]])
    return out


def _postorder(e: Expr) -> list[Expr]:
    order: list[Expr] = []
    seen: set[Expr] = set()
    stack: list[tuple[Expr, bool]] = [(e, False)]
    while stack:
        n, done = stack.pop()
        if done:
            order.append(n)
        elif n not in seen:
            seen.add(n)
            stack.append((n, True))
            stack.extend((a, False) for a in reversed(n.args) if a.kind is not Kind.SLOT)
    return order


def _widths(e: Expr, cfg: FFNConfig) -> dict[Expr, int]:
    w = node_widths(e, cfg.hidden, cfg.inner)  # the language's width rule
    if w[e] != cfg.hidden:
        raise CompileError(f"the FFN output is {w[e]} channels wide, not H = {cfg.hidden}: {e}")
    return w


def _cut(g: fx.Graph, v: fx.Node, width: int, target: int) -> fx.Node:
    if width == target:
        return v
    index = (Ellipsis, slice(None, target))  # fx's Argument type leaves out the Ellipsis it takes
    return g.call_function(operator.getitem, (v, index))  # type: ignore[arg-type]


def _lower_block(g: fx.Graph, e: Expr, x: fx.Node, b: int, inst: dict[Expr, tuple[str, int, int]],
                 widths: dict[Expr, int], weight: WeightFn) -> fx.Node:
    env: dict[Expr, fx.Node] = {}
    for n in _postorder(e):
        k = n.kind
        if k is Kind.VAR:
            env[n] = x
        elif k is Kind.LINEAR:
            name, out_f, in_f = inst[n]
            src = n.args[0]
            inp = _cut(g, env[src], widths[src], in_f)
            w, bias = weight(g, b, name, out_f, in_f)
            env[n] = g.call_function(F.linear, (inp, w, bias))
        elif k is Kind.UNARY:
            env[n] = g.call_function(_torch_fn(n), (env[n.args[0]],))
        else:
            target = widths[n]
            a, c = (_cut(g, env[s], widths[s], target) for s in n.args)
            env[n] = g.call_function(_torch_fn(n), (a, c))
    return env[e]


def _torch_fn(n: Expr) -> Callable[..., torch.Tensor]:
    if n.op.torch_fn is None:  # every unary and binary row of the op table has one
        raise CompileError(f"{n.op.name} has no torch function in the op table")
    return n.op.torch_fn


# (graph, block, name, out_features, in_features) -> (weight node, bias node)
WeightFn = Callable[[fx.Graph, int, str, int, int], tuple[fx.Node, fx.Node]]


def _own_weights(g: fx.Graph, b: int, name: str, out_f: int, in_f: int) -> tuple[fx.Node, fx.Node]:
    return g.get_attr(f"blocks.{b}.{name}.weight"), g.get_attr(f"blocks.{b}.{name}.bias")


def lower(e: Expr, cfg: FFNConfig, *, root: nn.Module | None = None, weight: WeightFn | None = None,
          class_name: str = "FFN") -> fx.GraphModule:
    """Compile ``e`` into a GraphModule with its own freshly initialised parameters.

    ``root``/``weight`` are for weight sharing (``supernet.py``): ``root`` holds the parameters
    and ``weight(graph, block, name, out, in)`` emits the nodes fetching (slices of) them."""
    widths = _widths(e, cfg)
    inst = slot_instances(e, cfg)
    n_blocks = blocks_of(e)
    if root is None:
        linears = {name: [i, o] for name, o, i in inst.values()}
        root = nn.Module()
        root.blocks = nn.ModuleList(Block(linears, cfg.hidden, cfg.ln_eps) for _ in range(n_blocks))
        root.dropout = nn.Dropout(cfg.dropout)
    g = fx.Graph()
    h = g.placeholder("x")
    for b in range(n_blocks):
        y = _lower_block(g, e, h, b, inst, widths, weight or _own_weights)
        y = g.call_module("dropout", (y,))
        h = g.call_module(f"blocks.{b}.ln", (g.call_function(operator.add, (h, y)),))
    g.output(h)
    gm = fx.GraphModule(root, g, class_name=class_name)
    gm.meta["expr"] = str(e)
    gm.meta["config"] = cfg
    verify_graph(gm, cfg)
    return gm


def verify_graph(gm: fx.GraphModule, cfg: FFNConfig) -> None:
    """Checks after lowering: opcodes, targets from the op table, lint, and the output width."""
    from exprsearch.lang.ops import OPS
    allowed = {o.torch_fn for o in OPS.values() if o.torch_fn is not None}
    allowed |= {F.linear, operator.getitem, operator.add}
    gm.graph.lint()
    for n in gm.graph.nodes:
        if n.op == "call_function" and n.target not in allowed:
            raise CompileError(f"verify: node {n.name} calls {n.target}, which is not in the op table")
        if n.op not in ("placeholder", "get_attr", "call_function", "call_module", "output"):
            raise CompileError(f"verify: unexpected opcode {n.op} at node {n.name}")
    param = next(gm.parameters(), None)
    probe = torch.zeros(1, 1, cfg.hidden, device=param.device if param is not None else "cpu",
                        dtype=param.dtype if param is not None else torch.float32)
    with torch.no_grad():
        out = ShapeProp(gm).propagate(probe)  # also records node.meta["tensor_meta"]
    if out.shape[-1] != cfg.hidden:
        raise CompileError(f"verify: output width {out.shape[-1]} != H = {cfg.hidden}")
