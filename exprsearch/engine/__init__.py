"""the training engine: models + token batches --> trained models, K at a time in lock-step.

One module per arrow: ``train`` (training settings, metrics, one model's curve), ``group`` (the one
loop: K models in lock-step, CUDA graphs), ``sizing`` (group size / workers / graphs from the GPU's
free memory), ``faults`` (the fault hook), ``blame`` (an exception -> a candidate's fault or a
bug), ``threads`` (CPU threads from the machine's load), ``checkpoint`` (a stopped training
continued), ``processes`` (how a worker process ended).

Imports: exprsearch.errors, exprsearch.lang, exprsearch.rows (nothing of knowledge distillation).
"""
