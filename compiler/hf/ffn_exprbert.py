"""The feed-forward networks of an ExprBert model, one class per distinct layer expression.

exprsearch writes this module into every model directory it ships, generated from the layers'
expressions: ``LAYER_FFNS[i]`` is layer i's FFN class (an ``ExprBertFFN`` whose ``block`` computes
the expression).  This copy, in the exprsearch package, is empty: the library builds its students
with compiled FFNs instead (``ffn=`` of ``ExprBertModel``).
"""
from __future__ import annotations

LAYER_FFNS: list[type] = []
