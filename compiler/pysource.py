"""validated AST --> readable Python: a shipped model's FFN code (``ffn_exprbert.py``).

Input: an expression and an ``FFNConfig``.  Output: the source of a method
``block(self, b, x)`` that computes one block's expression with public torch ops (each operator's
``py`` template from the op table), one line per distinct node, each value named after what it
is (``wb1``, ``gelu_wb1``, ``mul``, ...), binary operands cut to the narrower width where the
width rule says so; ``ffn_module`` puts one such method per distinct layer expression into an
``ExprBertFFN`` subclass (``hf/modeling_exprbert.py``: it stacks the blocks) and lists each
layer's class.  Invariants: it computes what ``lower`` compiles, bit for bit (tested over the
op table); the parameters are the same ``nn.Linear`` s (``b.wb1``, ``b.wb3``, ...), so a lowered
FFN's state dict loads into the shipped one unchanged.

>>> import exprsearch as es
>>> e = es.parse("linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)")
>>> print(block_source(e, FFNConfig(hidden=384)))
def block(self, b, x):
    \"\"\"linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)\"\"\"
    wb1 = b.wb1(x)
    gelu_wb1 = F.gelu(wb1)
    wb3 = b.wb3(x)
    mul_gelu_wb1_wb3 = torch.mul(gelu_wb1, wb3)
    return b.wb2(mul_gelu_wb1_wb3)
"""
from __future__ import annotations

import builtins
import keyword
import re
from typing import Sequence

from exprsearch.lang.expr import Expr
from exprsearch.lang.ops import Kind

from .lower import FFNConfig, _postorder, _widths, slot_instances

__all__ = ["block_source", "ffn_module"]

_LONG = 24  # longer derived names fall back to the operator's name and a number


def _names(e: Expr, inst: dict[Expr, tuple[str, int, int]]) -> dict[Expr, str]:
    """A readable, unique Python name for each distinct node of ``e``."""
    out: dict[Expr, str] = {}
    taken = {"b", "x", "self", "torch", "F"}
    for n in _postorder(e):
        if n.kind is Kind.VAR:
            out[n] = "x"
            continue
        if n.kind is Kind.LINEAR:
            want = inst[n][0]
        elif n.kind is Kind.UNARY:
            want = f"{n.op.name}_{out[n.args[0]]}"
        else:
            want = "_".join([n.op.name] + [out[a] for a in n.args])
        if len(want) > _LONG or not re.fullmatch(r"[a-z_][a-z0-9_]*", want):
            want = n.op.name
        name, k = want, 2
        while name in taken or hasattr(builtins, name) or keyword.iskeyword(name):
            name, k = f"{want}_{k}", k + 1
        taken.add(name)
        out[n] = name
    return out


def block_source(e: Expr, cfg: FFNConfig, indent: str = "") -> str:
    """The ``block(self, b, x)`` method computing one block of ``e`` (see the module docstring)."""
    widths, inst = _widths(e, cfg), slot_instances(e, cfg)
    names = _names(e, inst)

    def ref(n: Expr, width: int) -> str:  # an operand, cut to ``width`` channels where it is wider
        return names[n] if widths[n] == width else f"{names[n]}[..., :{width}]"

    lines = ["def block(self, b, x):", f'    """{e}"""']
    for n in _postorder(e):
        if n.kind is Kind.VAR:
            continue
        if n.kind is Kind.LINEAR:
            name, _, in_f = inst[n]
            rhs = f"b.{name}({ref(n.args[0], in_f)})"
        elif n.kind is Kind.UNARY:
            rhs = n.op.py.format(names[n.args[0]])
        else:
            rhs = n.op.py.format(*(ref(a, widths[n]) for a in n.args))
        lines.append(f"    return {rhs}" if n is e else f"    {names[n]} = {rhs}")
    return "\n".join(indent + line for line in lines)


def ffn_module(layers: Sequence[Expr], cfg: FFNConfig) -> str:
    r'''The source of ``ffn_exprbert.py`` for a model whose layer i computes ``layers[i]``: one
    ``ExprBertFFN`` class per distinct expression (named after the first layer using it), and
    ``LAYER_FFNS``, each layer's class.

    >>> import exprsearch as es
    >>> std = es.parse("linear1_1(gelu(linear1_1(x,wb1)),wb2)")
    >>> print(ffn_module([std, std], FFNConfig(hidden=8)).split("\n\n\n", 1)[1])
    class Layer0FFN(ExprBertFFN):
        """Layers 0 and 1."""
    <BLANKLINE>
        def block(self, b, x):
            """linear1_1(gelu(linear1_1(x,wb1)),wb2)"""
            wb1 = b.wb1(x)
            gelu_wb1 = F.gelu(wb1)
            return b.wb2(gelu_wb1)
    <BLANKLINE>
    <BLANKLINE>
    LAYER_FFNS = [Layer0FFN, Layer0FFN]
    <BLANKLINE>
    '''
    from exprsearch import __version__
    first: dict[Expr, int] = {}
    for i, e in enumerate(layers):
        first.setdefault(e, i)
    classes = []
    for e, i in first.items():
        users = [j for j, other in enumerate(layers) if other is e]
        said = f"Layer {users[0]}" if len(users) == 1 else \
            "Layers " + ", ".join(map(str, users[:-1])) + f" and {users[-1]}"
        classes.append(f'class Layer{i}FFN(ExprBertFFN):\n    """{said}."""\n\n{block_source(e, cfg, indent="    ")}\n')
    body = "\n\n".join(classes)
    imports = [line for line, used in (("import torch", "torch." in body), ("import torch.nn.functional as F", "F." in body))
               if used]
    head = (f'"""The feed-forward networks of this ExprBert model, one class per distinct layer expression\n'
            f"(written by exprsearch {__version__} from the expressions in config.json's ``ffn_layers``).\n\n"
            "``block`` computes one block of the layer's FFN; ``ExprBertFFN`` (modeling_exprbert.py) stacks the\n"
            'blocks, each followed by ``LayerNorm(h + dropout(block(h)))``.\n"""')
    table = "LAYER_FFNS = [" + ", ".join(f"Layer{first[e]}FFN" for e in layers) + "]\n"
    return "\n".join([head, *imports, "", "from .modeling_exprbert import ExprBertFFN", "", "", body, "", table])
