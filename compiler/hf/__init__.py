"""compiler.hf: the student's own Hugging Face code -- one source for the library and the shipped model.

``configuration_exprbert.py`` (the config: every layer's FFN shapes and attention, exits),
``modeling_exprbert.py`` (``ExprBertModel``, ``ExprBertForSequenceClassification``),
``lsra_exprbert.py`` (Long-Short Range Attention), ``exits_exprbert.py`` (exit heads, gates,
rules, batched early exit) and ``ffn_exprbert.py`` (the per-layer FFN classes; empty here,
generated into each shipped directory).  They import only torch, transformers and each other
(relative imports), so ``save_pretrained`` copies them verbatim into a model directory that loads
where exprsearch is not installed (``tests/test_ship_hf.py``).
"""
