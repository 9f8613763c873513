"""data reading: GLUE folders and your own files --> examples --> training, held-out and dev rows --> token batches.

One module per arrow: ``paths`` (where the data and the caches are), ``records`` (``Task``,
``Examples``, ``DataError``), ``glue`` (GLUE TSV layouts, the task table, metrics, the score),
``userdata`` (CSV, TSV, JSONL, ``datasets`` folders -> a task), ``holdout`` (a task's files ->
training, held-out and dev rows), ``tokens`` (tokenisation cache, length-bucketed batches).

Imports: exprsearch.errors only (no model, no training).
"""
