"""Typed, immutable, hash-consed AST.

Input: an operator (name or ``Op``) and child nodes.  Output: the unique node for that structure.
Invariants: structurally equal nodes are the same object (so ``==`` is ``is`` and hashing is
O(1)); nodes never change; ``str(e)`` is valid DSL with ``parse(str(e)) == e``;
``e.func(*e.args) is e`` for every class; arity and slot typing hold for every node that exists.

Classes are named after the grammar rules they come from (``var``, ``slot``, ``unary``, ``binary``,
``linear``).  ``node()`` is the one constructor that dispatches on the operator's kind.

>>> e = node("linear1_1", node("gelu", node("linear1_1", X, WB1)), WB2)
>>> str(e)
'linear1_1(gelu(linear1_1(x,wb1)),wb2)'
>>> e is node("linear1_1", node("gelu", node("linear1_1", X, WB1)), WB2)
True
>>> e.func(*e.args) is e, e.size, e.depth
(True, 4, 3)
"""
from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterator

from exprsearch.errors import ArityError, DSLError, NestingTooDeepError, SlotTypeError

from .ops import Kind, Op
from .ops import op as lookup_op

__all__ = ["Expr", "Var", "Slot", "Unary", "Binary", "Linear", "node", "X", "WB1", "WB2", "WB3",
           "ModelSpec", "AttnSpec", "MAX_DEPTH", "order_key", "Path"]

MAX_DEPTH = 200  # deepest AST accepted anywhere; keeps every recursive pass far from Python's limit

Path = tuple[int, ...]  # child indices from the root


class Expr:
    """Base of all AST nodes.  Build nodes with :func:`node`, never by mutating."""

    __slots__ = ("op", "args", "size", "depth", "_text", "__weakref__")
    kind: ClassVar[Kind]

    op: Op
    args: tuple["Expr", ...]
    _text: str   # the node's DSL text: str(e)
    size: int    # nodes in the tree, slots not counted (the standard FFN has 4)
    depth: int   # edges on the longest root-leaf path, slots not counted (standard FFN: 3)

    def __new__(cls, op: Op | str, *args: "Expr") -> "Expr":
        return node(op, *args)

    # -- identity -------------------------------------------------------------------------
    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._text!r})"

    def __reduce__(self) -> tuple:  # re-intern on unpickling (process pools, Ray)
        return (node, (self.op.name, *self.args))

    def __copy__(self) -> "Expr":
        return self

    def __deepcopy__(self, memo: dict) -> "Expr":
        return self

    @property
    def name(self) -> str:
        return self.op.name

    @property
    def func(self) -> Callable[..., "Expr"]:
        """Rebuilds a node of this operator from new args (sympy's ``e.func(*e.args)``)."""
        return functools.partial(node, self.op)

    # -- traversal ------------------------------------------------------------------------
    def walk(self) -> Iterator["Expr"]:
        """Pre-order over the tree (shared subtrees visited once per occurrence)."""
        stack: list[Expr] = [self]
        while stack:
            e = stack.pop()
            yield e
            stack.extend(reversed(e.args))

    def walk_paths(self) -> Iterator[tuple[Path, "Expr"]]:
        """Pre-order ``(path, node)`` pairs; ``path`` indexes args from the root."""
        stack: list[tuple[Path, Expr]] = [((), self)]
        while stack:
            path, e = stack.pop()
            yield path, e
            stack.extend((path + (i,), a) for i, a in reversed(list(enumerate(e.args))))

    def at(self, path: Path) -> "Expr":
        e = self
        for i in path:
            e = e.args[i]
        return e

    def replace_at(self, path: Path, new: "Expr") -> "Expr":
        """A copy with the subtree at ``path`` replaced by ``new``."""
        if not path:
            return new
        i, rest = path[0], path[1:]
        args = list(self.args)
        args[i] = args[i].replace_at(rest, new)
        return node(self.op, *args)

    def contains(self, other: "Expr") -> bool:
        return any(e is other for e in self.walk())

    def linears(self) -> list["Linear"]:
        return [e for e in self.walk() if e.op.kind is Kind.LINEAR]  # type: ignore[misc]


class Var(Expr):
    """The layer input ``x``."""
    __slots__ = ()
    kind = Kind.VAR


class Slot(Expr):
    """A weight/bias slot ``wb1``, ``wb2`` or ``wb3`` (a gate's); only valid as a linear's second argument."""
    __slots__ = ()
    kind = Kind.SLOT


class Unary(Expr):
    __slots__ = ()
    kind = Kind.UNARY


class Binary(Expr):
    __slots__ = ()
    kind = Kind.BINARY


class Linear(Expr):
    """``linearX_Y(input, slot)``."""
    __slots__ = ()
    kind = Kind.LINEAR

    @property
    def input(self) -> Expr:
        return self.args[0]

    @property
    def slot(self) -> str:
        return self.args[1].op.name


_CLASS_OF: dict[Kind, type[Expr]] = {Kind.VAR: Var, Kind.SLOT: Slot, Kind.UNARY: Unary,
                                     Kind.BINARY: Binary, Kind.LINEAR: Linear}


# The intern table: (op name, args) -> weak reference to the one node with that structure.
# Entries leave when their node is garbage (the callback), so long searches do not grow it.
_TABLE: dict[tuple, "weakref.ref[Expr]"] = {}


def node(op: Op | str, *args: Expr) -> Expr:
    """The one constructor: returns the interned node, checking arity and slot typing first.

    >>> node("gelu", X, X)
    Traceback (most recent call last):
    ...
    exprsearch.errors.ArityError: gelu takes 1 argument, got 2
    """
    key = (op if op.__class__ is str else op.name, args)  # type: ignore[union-attr]
    ref = _TABLE.get(key)
    if ref is not None:
        hit = ref()
        if hit is not None:
            return hit
    return _make(lookup_op(op) if op.__class__ is str else op, args, key)  # type: ignore[arg-type]


class _Ref(weakref.ref):
    __slots__ = ("key",)
    key: tuple


def _drop(ref: _Ref) -> None:
    if _TABLE.get(ref.key) is ref:
        del _TABLE[ref.key]


def _check(o: Op, args: tuple[Expr, ...]) -> None:
    if len(args) != o.arity:
        s = "" if o.arity == 1 else "s"
        raise ArityError(f"{o.name} takes {o.arity} argument{s}, got {len(args)}")
    for i, a in enumerate(args):
        if not isinstance(a, Expr):
            raise DSLError(f"{o.name}: argument {i + 1} is {type(a).__name__}, not an expression")
        wants_slot = o.kind is Kind.LINEAR and i == 1
        if wants_slot and a.kind is not Kind.SLOT:
            raise SlotTypeError(f"{o.name}: argument 2 must be a slot (wb1, wb2 or wb3), got '{a}'",
                                node=a, arg=i)
        if not wants_slot and a.kind is Kind.SLOT:
            raise SlotTypeError(f"{o.name}: argument {i + 1} must be a tensor expression; slot '{a}' "
                                f"is only valid as a linear's second argument", node=a, arg=i)


def _make(o: Op, args: tuple[Expr, ...], key: tuple) -> Expr:
    _check(o, args)
    self = object.__new__(_CLASS_OF[o.kind])
    self.op, self.args = o, args
    if not args:
        self.size, self.depth, self._text = (0 if o.kind is Kind.SLOT else 1), 0, o.name
    else:
        a0 = args[0]
        if len(args) == 1 or o.kind is Kind.LINEAR:  # a linear's second argument is a slot
            self.size, self.depth = a0.size + 1, a0.depth + 1
        elif len(args) == 2:
            a1 = args[1]
            self.size, self.depth = a0.size + a1.size + 1, max(a0.depth, a1.depth) + 1
        else:
            self.size = 1 + sum(a.size for a in args)
            self.depth = 1 + max(a.depth for a in args)
        if self.depth > MAX_DEPTH:
            raise NestingTooDeepError(f"expression nests deeper than {MAX_DEPTH} levels")
        self._text = o.name + "(" + ",".join([a._text for a in args]) + ")"
    ref = _Ref(self, _drop)
    ref.key = key
    _TABLE[key] = ref
    return self


X = node("x")
WB1 = node("wb1")
WB2 = node("wb2")
WB3 = node("wb3")


def order_key(e: Expr) -> tuple[int, str]:
    """The one canonical ordering of expressions: smaller trees first, then by text."""
    return (e.size, e._text)


@dataclass(frozen=True)
class AttnSpec:
    """The attention part of a layer: an ATTN row of the op table and its fields.

    >>> str(AttnSpec("lsra", heads=6, kernel=7)), str(AttnSpec("mha"))
    ('lsra(heads=6, kernel=7)', 'mha()')
    """

    kind: str = "mha"           # mha | lsra
    heads: int | None = None    # attention heads (None: the model's)
    kernel: int | None = None   # lsra: width of the depthwise convolution (None: 7)

    def __str__(self) -> str:
        fields = [f"{k}={v}" for k, v in (("heads", self.heads), ("kernel", self.kernel)) if v is not None]
        return f"{self.kind}({', '.join(fields)})"


@dataclass(frozen=True)
class ModelSpec:
    """A per-layer model spec: the FFN expression of each layer, bottom to top, and optionally
    each layer's attention part and the model's width.

    >>> spec = ModelSpec((X, node("gelu", X)))
    >>> str(spec), len(spec)
    ('[x; gelu(x)]', 2)
    >>> str(ModelSpec((X,), attn=(AttnSpec("mha", heads=6),), hidden=384))
    '[model(layers=1, hidden=384); layer(attn=mha(heads=6), ffn=x)]'
    """

    layers: tuple[Expr, ...]
    attn: tuple[AttnSpec | None, ...] | None = None   # per layer; None: standard attention everywhere
    hidden: int | None = None                          # model width H (None: the teacher's)

    def __post_init__(self) -> None:
        if not self.layers:
            raise DSLError("a model spec needs at least one layer")
        if self.attn is not None and len(self.attn) != len(self.layers):
            raise DSLError(f"{len(self.attn)} attention parts for {len(self.layers)} layers")
        if self.attn is not None and all(a is None for a in self.attn):
            object.__setattr__(self, "attn", None)

    @property
    def plain(self) -> bool:
        """Only FFN expressions (the classic spec)."""
        return self.attn is None and self.hidden is None

    def __str__(self) -> str:
        if self.plain:
            return "[" + "; ".join(map(str, self.layers)) + "]"
        head = f"model(layers={len(self.layers)}" + (f", hidden={self.hidden}" if self.hidden else "") + ")"
        items = [f"layer(attn={a}, ffn={e})" if a is not None else str(e)
                 for e, a in zip(self.layers, self.attn or (None,) * len(self.layers))]
        return "[" + "; ".join([head] + items) + "]"

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Expr]:
        return iter(self.layers)

    def __getitem__(self, i: int) -> Expr:
        return self.layers[i]

    def to_lines(self) -> str:
        """The file form: one item per line."""
        inner = str(self)[1:-1]
        return "".join(f"{item}\n" for item in inner.split("; "))

    def broadcast(self, n_layers: int) -> "ModelSpec":
        """Repeat a one-layer spec to ``n_layers``; other lengths must already match."""
        if len(self.layers) == n_layers:
            return self
        if len(self.layers) == 1:
            return ModelSpec(self.layers * n_layers, None if self.attn is None else self.attn * n_layers,
                             self.hidden)
        raise DSLError(f"model spec has {len(self.layers)} layers but the model has {n_layers}")

    def with_layers(self, keep: list[int]) -> "ModelSpec":
        """The spec of a shallower model made of layers ``keep`` (LayerDrop extraction)."""
        return ModelSpec(tuple(self.layers[i] for i in keep),
                         None if self.attn is None else tuple(self.attn[i] for i in keep), self.hidden)


