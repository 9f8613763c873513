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

# exprsearch.compiler is the checkout's compiler/ folder (an install maps it into the package); run
# from a checkout without installing (PYTHONPATH=.), the package's path reaches it too
import os as _os

_CHECKOUT = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "compiler")) and \
        _os.path.isfile(_os.path.join(_CHECKOUT, "compiler", "__init__.py")):
    __path__.append(_CHECKOUT)  # noqa: F821


def tune_gc() -> None:
    """Raise the cyclic GC's first threshold: the pipeline allocates many small acyclic objects
    (AST nodes, token lists) and the default threshold spends ~25 % of parse time in the GC.
    Called by the CLI; library users may call it too."""
    import gc
    gc.set_threshold(max(gc.get_threshold()[0], 50_000), 20, 20)


from exprsearch.errors import DSLError, ExprSearchError, ValidityError
from exprsearch.lang.canon import canonical_key, canonicalize, canonicalize_spec
from exprsearch.lang.dag import dag_stats, to_dag
from exprsearch.lang.dedup import Deduper, DedupResult
from exprsearch.lang.expr import WB1, WB2, Expr, ModelSpec, X, node
from exprsearch.lang.numeric import fingerprint
from exprsearch.lang.ops import OPS, Kind, Op
from exprsearch.lang.parsing import parse, parse_spec, read_spec
from exprsearch.lang.symbolic import prove_equal, to_sympy
from exprsearch.lang.syntax import parse_tree, to_ast
from exprsearch.lang.validity import is_valid, validate
from exprsearch.space.evolve import crossover, mutate
from exprsearch.space.generate import Space, count, enumerate_space, sample

__all__ = ["__version__", "tune_gc", "parse", "parse_spec", "read_spec", "parse_tree", "to_ast", "validate",
           "is_valid", "canonicalize", "canonical_key", "canonicalize_spec", "Deduper", "DedupResult",
           "fingerprint", "to_sympy", "prove_equal", "to_dag", "dag_stats", "Space", "count", "sample",
           "enumerate_space", "mutate", "crossover", "Expr", "ModelSpec", "node", "X", "WB1", "WB2",
           "OPS", "Op", "Kind", "ExprSearchError", "DSLError", "ValidityError"]
