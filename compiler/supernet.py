"""weight sharing: supernet FFN --> candidate FFNs (views or copies), and teacher --> student FFN.

Input: a ``SuperFFN`` (the largest X = 4 blocks and full width D, one per layer) and an expression.
Output: ``lower_shared`` -- a GraphModule whose linears read *slices of the supernet's own
parameters* (first d output channels of ``wb1`` and of a gate's ``wb3``, first d input columns of
``wb2``, first X blocks), so training it trains the supernet; ``inherit`` -- a standalone
GraphModule holding *copies* of the same slices (a warm start; ``load_slices`` copies them into a
student's own lowered FFN).  Invariant: both compute exactly the same function.

>>> import torch, exprsearch as es
>>> cfg = FFNConfig(hidden=8)
>>> sup = SuperFFN(cfg)
>>> e = es.parse("linear2_2(gelu(linear2_2(x,wb1)),wb2)")
>>> x = torch.randn(3, 8)
>>> torch.equal(lower_shared(e, sup).eval()(x), inherit(sup, e).eval()(x))
True
"""
from __future__ import annotations

import operator
from typing import Any, Iterable, TypeVar, cast

import torch
from torch import fx, nn
from transformers.models.bert.modeling_bert import BertIntermediate, BertOutput

from exprsearch.lang.expr import Expr

from .lower import (
    Block,
    CompileError,
    FFNConfig,
    block,
    blocks_of,
    lower,
    slot_instances,
)

__all__ = ["SuperFFN", "lower_shared", "inherit", "load_slices", "load_teacher_ffn", "MAX_BLOCKS", "SHARED_SLOTS"]

MAX_BLOCKS = 4
SHARED_SLOTS = ("wb1", "wb2", "wb3")  # one full matrix of each per block; wb3 is a gated FFN's gate


class SuperFFN(nn.Module):
    """The weight-sharing FFN of one layer: ``MAX_BLOCKS`` blocks, ``wb1``: H -> D, ``wb2``: D -> H
    and ``wb3``: H -> D (the gate of gated candidates; the standard FFN below does not read it)."""

    def __init__(self, cfg: FFNConfig, max_blocks: int = MAX_BLOCKS) -> None:
        super().__init__()
        self.cfg = cfg
        full = {"wb1": [cfg.hidden, cfg.D], "wb2": [cfg.D, cfg.hidden], "wb3": [cfg.hidden, cfg.D]}  # [in, out]
        self.blocks = nn.ModuleList(Block(full, cfg.hidden, cfg.ln_eps) for _ in range(max_blocks))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # the full supernet: standard gelu FFN blocks
        for b in cast(Iterable[Any], self.blocks):  # Blocks: their linears are known by name
            x = b.ln(x + self.dropout(b.wb2(torch.nn.functional.gelu(b.wb1(x)))))
        return x


def _check_shareable(e: Expr, sup: SuperFFN) -> dict:
    inst = slot_instances(e, sup.cfg)
    names = sorted(name for name, _, _ in inst.values())
    if any(n not in SHARED_SLOTS for n in names):
        raise CompileError(f"weight sharing needs one wb1, one wb2 and at most one wb3 linear; {e} has {names}")
    if blocks_of(e) > len(sup.blocks):
        raise CompileError(f"{e} stacks {blocks_of(e)} blocks; the supernet has {len(sup.blocks)}")
    for name, out_f, in_f in inst.values():
        full_out, full_in = getattr(sup.blocks[0], name).weight.shape
        if out_f > full_out or in_f > full_in:
            raise CompileError(f"{name} of {e} needs {out_f}x{in_f}; the supernet has {full_out}x{full_in}")
    return inst


def _sliced(g: fx.Graph, b: int, name: str, out_f: int, in_f: int) -> tuple[fx.Node, fx.Node]:
    w = g.get_attr(f"blocks.{b}.{name}.weight")
    bias = g.get_attr(f"blocks.{b}.{name}.bias")
    w = g.call_function(operator.getitem, (w, (slice(None, out_f), slice(None, in_f))))
    bias = g.call_function(operator.getitem, (bias, slice(None, out_f)))
    return w, bias


def lower_shared(e: Expr, sup: SuperFFN) -> fx.GraphModule:
    """The candidate ``e`` as a view of the supernet: its parameters *are* the supernet's.  Draws
    no random number (whatever lowering initialises is the supernet's): a warm-up's dropout masks
    do not depend on which views were lowered before, so a warm-up continued from a checkpoint
    draws what an uninterrupted one does."""
    _check_shareable(e, sup)
    with torch.random.fork_rng(devices=[]):
        return lower(e, sup.cfg, root=sup, weight=_sliced, class_name="SharedFFN")


def inherit(sup: SuperFFN, e: Expr) -> fx.GraphModule:
    """A standalone FFN for ``e`` initialised with copies of the supernet slices it would use."""
    return load_slices(lower(e, sup.cfg), sup, e)


M = TypeVar("M", bound=nn.Module)


@torch.no_grad()
def load_slices(gm: M, sup: SuperFFN, e: Expr) -> M:
    """Copy into ``gm`` (``e`` lowered: a GraphModule, or any module with its parameter layout) the
    supernet slices ``e`` uses: first X blocks, first d rows of ``wb1`` / ``wb3``, first d columns
    of ``wb2``, the LayerNorms.  Returns ``gm``."""
    inst = _check_shareable(e, sup)
    for b in range(blocks_of(e)):
        src, dst = block(sup, b), block(gm, b)
        for name, out_f, in_f in inst.values():
            getattr(dst, name).weight.copy_(getattr(src, name).weight[:out_f, :in_f])
            getattr(dst, name).bias.copy_(getattr(src, name).bias[:out_f])
        dst.ln.load_state_dict(src.ln.state_dict())
    return gm


@torch.no_grad()
def load_teacher_ffn(dst: nn.Module, intermediate: BertIntermediate, output: BertOutput) -> int:
    """Copy a HF BERT layer's FFN (``intermediate.dense``, ``output.dense``, ``output.LayerNorm``)
    into every block of ``dst`` (a SuperFFN or a lowered FFN) where shapes allow, taking the first
    rows/columns; returns how many tensors were copied.  A gate (``wb3``) gets the same rows of
    ``intermediate.dense`` as ``wb1``: it starts equal to the value path.  Blocks after the first
    get the same warm start; training separates them."""
    w1, b1 = intermediate.dense.weight, intermediate.dense.bias
    w2, b2 = output.dense.weight, output.dense.bias
    copied = 0
    blocks: list[Any] = list(dst.get_submodule("blocks").children())  # Blocks, or modules of their layout
    for blk in blocks:
        for name, lin in blk.named_children():  # in a GraphModule the linears are plain Modules
            if not name.startswith("wb"):
                continue
            sw, sb = (w1, b1) if name.startswith(("wb1", "wb3")) else (w2, b2)
            o, i = lin.weight.shape
            if o <= sw.shape[0] and i <= sw.shape[1]:
                lin.weight.copy_(sw[:o, :i])
                lin.bias.copy_(sb[:o])
                copied += 2
        ln = output.LayerNorm
        if ln.weight.shape[0] >= blk.ln.weight.shape[0]:
            h = blk.ln.weight.shape[0]
            blk.ln.weight.copy_(ln.weight[:h])
            blk.ln.bias.copy_(ln.bias[:h])
            copied += 2
    return copied
