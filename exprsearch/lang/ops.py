"""The one operator table: every DSL name, with its semantics in every backend.

Input: nothing.  Output: ``OPS``, an ordered mapping ``name -> Op``.  Invariant: no other module
lists operator names; the grammar (``grammar/ffn.lark``) repeats them and a test keeps the two in
sync.  The parser, AST checks, canonicaliser, fingerprint, compiler, cost model and REPL completion
all read this table, so adding an operator is one row here plus one grammar alternative.

>>> OPS["gelu"].arity, OPS["gelu"].is_activation
(1, True)
>>> OPS["linear2_4"].blocks, OPS["linear2_4"].ratio
(2, 4)
>>> [op.name for op in ops_of(Kind.BINARY)]
['add', 'mul', 'max', 'sub', 'min']
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Callable, Iterable

import sympy
import torch
import torch.nn.functional as F

from exprsearch.errors import UnknownNameError, suggest

__all__ = ["Kind", "Op", "OPS", "ops_of", "linear_op", "op", "unknown_name", "REFERENCE_UNARY", "REFERENCE_BINARY",
           "ALL_NAMES", "BLOCK_CHOICES", "RATIO_CHOICES"]


class Kind(enum.Enum):
    """Syntactic and typing class of an operator; the grammar has one terminal per kind."""

    VAR = "var"        # the layer input x (a tensor of width H)
    SLOT = "slot"      # a weight/bias slot, wb1, wb2 or wb3 (only valid as a linear's 2nd argument)
    UNARY = "unary"    # elementwise f(a)
    BINARY = "binary"  # elementwise f(a, b); operands of different widths are cut to the narrower
    LINEAR = "linear"  # linearX_Y(e, wbI): affine map using slot I, X stacked blocks, width D // Y
    ATTN = "attn"      # an attention part of a layer spec: mha(heads=h), lsra(heads=h, kernel=k)


@dataclass(frozen=True)
class Op:
    """One DSL operator.  Frozen: the table is the single source of truth."""

    name: str
    kind: Kind
    arity: int
    torch_fn: Callable[..., torch.Tensor] | None = None  # elementwise semantics (None: leaf/linear)
    sympy_fn: Callable[..., sympy.Expr] | None = None    # the same function, symbolically
    cost: float = 0.0            # approximate FLOPs per output element (linears: cost model counts MACs)
    commutative: bool = False    # f(a, b) == f(b, a)
    associative: bool = False    # f(f(a, b), c) == f(a, f(b, c)): chains are flattened and sorted
                                 # (exact in IEEE for max/min; for add up to rounding)
    idempotent: bool = False     # unary: f(f(a)) == f(a); binary: f(a, a) == a
    elementwise: bool = True     # acts channel by channel
    is_activation: bool = False  # counts for the "no activation directly inside an activation" rule
    nonneg: bool = False         # output >= 0 everywhere (lets relu(e) -> e)
    reference: bool = True       # part of EfficientBERT's published search space
    ignores: Callable[..., tuple[torch.Tensor, ...]] | None = None  # where each operand does not matter,
                                 # exactly (relu: a < 0; max: the smaller one): a value unchanged there is
                                 # no saturation (lang/saturation.py)
    blocks: int = 0              # X of linearX_Y: FFN blocks stacked, each with weights+residual+LN
    ratio: int = 0               # Y of linearX_Y: inner width d = D // Y
    doc: str = ""
    py: str = ""                 # the same function as Python source over public torch ops ({0}, {1}: operands),
                                 # what a shipped model's generated FFN code reads (compiler/pysource.py)

    @property
    def is_linear(self) -> bool:
        return self.kind is Kind.LINEAR

    @property
    def is_leaf(self) -> bool:
        return self.arity == 0


def _sqrt_abs(a: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(torch.abs(a) + 1e-6)


def _sqrelu(a: torch.Tensor) -> torch.Tensor:
    return torch.square(torch.relu(a))


_S = sympy
_EPS = sympy.Rational(1, 10**6)

_ROWS: list[Op] = [
    Op("x", Kind.VAR, 0, doc="the layer input, width H"),
    Op("wb1", Kind.SLOT, 0, doc="weight/bias slot of the first linear: H -> d"),
    Op("wb2", Kind.SLOT, 0, doc="weight/bias slot of the second linear: d -> H"),
    # -- extension: the gate of a gated FFN (GEGLU, SwiGLU) has weights of its own
    Op("wb3", Kind.SLOT, 0, reference=False,
       doc="weight/bias slot of the gate linear: H -> d like wb1 (optional, at most once)"),
    # -- unary activations of the reference space
    Op("gelu", Kind.UNARY, 1, F.gelu, lambda a: a / 2 * (1 + _S.erf(a / _S.sqrt(2))), 8,
       is_activation=True, doc="x * Phi(x), exact erf form", py="F.gelu({0})"),
    Op("sigmoid", Kind.UNARY, 1, torch.sigmoid, lambda a: 1 / (1 + _S.exp(-a)), 4,
       is_activation=True, nonneg=True, py="torch.sigmoid({0})"),
    Op("tanh", Kind.UNARY, 1, torch.tanh, _S.tanh, 5, is_activation=True, py="torch.tanh({0})"),
    Op("relu", Kind.UNARY, 1, torch.relu, lambda a: _S.Max(a, 0), 1,
       idempotent=True, is_activation=True, nonneg=True, py="torch.relu({0})", ignores=lambda a: (a < 0,)),
    Op("leaky_relu", Kind.UNARY, 1, F.leaky_relu, lambda a: _S.Max(a, a / 100), 2,
       is_activation=True, doc="negative slope 0.01", py="F.leaky_relu({0})"),
    Op("elu", Kind.UNARY, 1, F.elu, lambda a: _S.Piecewise((a, a > 0), (_S.exp(a) - 1, True)), 3,
       is_activation=True, doc="alpha 1", py="F.elu({0})"),
    Op("swish", Kind.UNARY, 1, F.silu, lambda a: a / (1 + _S.exp(-a)), 5,
       is_activation=True, doc="x * sigmoid(x) (SiLU)", py="F.silu({0})"),
    # -- extended unary ops (safe: finite everywhere, finite gradients)
    Op("neg", Kind.UNARY, 1, torch.neg, lambda a: -a, 1, reference=False, py="torch.neg({0})"),
    Op("square", Kind.UNARY, 1, torch.square, lambda a: a**2, 1, nonneg=True, reference=False, py="torch.square({0})"),
    Op("sqrt_abs", Kind.UNARY, 1, _sqrt_abs, lambda a: _S.sqrt(_S.Abs(a) + _EPS), 3,
       nonneg=True, reference=False, doc="sqrt(|a| + 1e-6): finite gradient at 0",
       py="torch.sqrt(torch.abs({0}) + 1e-6)"),
    Op("sqrelu", Kind.UNARY, 1, _sqrelu, lambda a: _S.Max(a, 0) ** 2, 2,
       is_activation=True, nonneg=True, reference=False, ignores=lambda a: (a < 0,), doc="Primer's squared ReLU",
       py="torch.square(torch.relu({0}))"),
    # -- binary ops
    Op("add", Kind.BINARY, 2, torch.add, lambda a, b: a + b, 1, commutative=True, associative=True,
       py="torch.add({0}, {1})"),
    # mul is not flattened: with mul(a, a) -> square(a) the rules would stop being confluent;
    # re-associated products agree to rounding, so the numeric fingerprint merges them (dedup.py)
    Op("mul", Kind.BINARY, 2, torch.mul, lambda a, b: a * b, 1, commutative=True,
       ignores=lambda a, b: (b == 0, a == 0), py="torch.mul({0}, {1})"),
    Op("max", Kind.BINARY, 2, torch.maximum, _S.Max, 1,
       commutative=True, associative=True, idempotent=True, ignores=lambda a, b: (a < b, b < a),
       py="torch.maximum({0}, {1})"),
    Op("sub", Kind.BINARY, 2, torch.sub, lambda a, b: a - b, 1, reference=False, py="torch.sub({0}, {1})"),
    Op("min", Kind.BINARY, 2, torch.minimum, _S.Min, 1,
       commutative=True, associative=True, idempotent=True, reference=False, ignores=lambda a, b: (a > b, b > a),
       py="torch.minimum({0}, {1})"),
]
_ROWS += [
    Op("mha", Kind.ATTN, 0, elementwise=False, reference=False,
       doc="multi-head self-attention with `heads` heads (fewer than the model's: pruned heads)"),
    Op("lsra", Kind.ATTN, 0, elementwise=False, reference=False,
       doc="Long-Short Range Attention (Lite Transformer): half the channels through attention "
           "with `heads` heads, half through a depthwise convolution of width `kernel`"),
]
BLOCK_CHOICES = (1, 2, 3, 4)   # X
RATIO_CHOICES = (1, 2, 3, 4)   # Y
_ROWS += [Op(f"linear{x}_{y}", Kind.LINEAR, 2, cost=2.0, elementwise=False, blocks=x, ratio=y,
             doc=f"affine map, {x} stacked block(s), inner width D // {y}")
          for x in BLOCK_CHOICES for y in RATIO_CHOICES]

OPS: dict[str, Op] = {row.name: row for row in _ROWS}
ALL_NAMES: tuple[str, ...] = tuple(OPS)
REFERENCE_UNARY: tuple[str, ...] = tuple(o.name for o in _ROWS if o.kind is Kind.UNARY and o.reference)
REFERENCE_BINARY: tuple[str, ...] = tuple(o.name for o in _ROWS if o.kind is Kind.BINARY and o.reference)


def ops_of(kind: Kind, names: Iterable[str] | None = None) -> list[Op]:
    """Rows of one kind, in table order, optionally restricted to ``names``."""
    keep = None if names is None else set(names)
    return [o for o in _ROWS if o.kind is kind and (keep is None or o.name in keep)]


def linear_op(blocks: int, ratio: int) -> Op:
    """The ``linearX_Y`` row for X = blocks, Y = ratio.

    >>> linear_op(1, 2).name
    'linear1_2'
    """
    return OPS[f"linear{blocks}_{ratio}"]


def op(name: str) -> Op:
    """Look a name up, raising the DSL's UnknownNameError (with a suggestion) if absent."""
    try:
        return OPS[name]
    except KeyError:
        raise unknown_name(name) from None


_LINEAR_NAME = re.compile(r"linear\d+_\d+")


def unknown_name(name: str, *, text: str | None = None, span: tuple[int, int] | None = None) -> UnknownNameError:
    """The error for a name that is no operator, variable or slot, with a hint: the nearest name,
    or the allowed X and Y of a linearX_Y.

    >>> unknown_name("gleu").hint
    "did you mean 'gelu'?"
    """
    shown = name if len(name) <= 40 else name[:37] + "..."
    if _LINEAR_NAME.fullmatch(name):
        hint: str | None = (f"linearX_Y needs X in {list(BLOCK_CHOICES)} (stacked blocks) and "
                            f"Y in {list(RATIO_CHOICES)} (width ratio)")
    else:
        best = suggest(name, ALL_NAMES)
        hint = f"did you mean '{best}'?" if best else None
    return UnknownNameError(f"unknown name '{shown}'", text=text, span=span, hint=hint)
