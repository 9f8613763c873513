"""exprsearch: search Transformer feed-forward networks written as symbolic expressions.

The pipeline, one module per arrow::

    text --syntax--> AST --validate--> valid AST --canon--> canonical AST --dedup--> candidate
         --generate/mutate--> new candidates

>>> import exprsearch as es
>>> e = es.parse("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)")
>>> str(es.canonicalize(e))
'linear1_2(relu(mul(x,linear1_2(x,wb1))),wb2)'
"""
from __future__ import annotations

__version__ = "0.1.0"

from .canon import canonical_key, canonicalize, canonicalize_spec
from .dag import dag_stats, to_dag
from .dedup import Deduper, DedupResult
from .errors import DSLError, ExprSearchError, ValidityError
from .expr import WB1, WB2, X, Expr, ModelSpec, node
from .generate import Space, count, enumerate_space, sample
from .mutate import crossover, mutate
from .numeric import fingerprint
from .ops import OPS, Kind, Op
from .parsing import parse, parse_spec, read_spec
from .symbolic import prove_equal, to_sympy
from .syntax import parse_tree, to_ast
from .validate import is_valid, validate

__all__ = ["__version__", "parse", "parse_spec", "read_spec", "parse_tree", "to_ast", "validate",
           "is_valid", "canonicalize", "canonical_key", "canonicalize_spec", "Deduper", "DedupResult",
           "fingerprint", "to_sympy", "prove_equal", "to_dag", "dag_stats", "Space", "count", "sample",
           "enumerate_space", "mutate", "crossover", "Expr", "ModelSpec", "node", "X", "WB1", "WB2",
           "OPS", "Op", "Kind", "ExprSearchError", "DSLError", "ValidityError"]
