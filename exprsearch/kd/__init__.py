"""warm-up knowledge distillation: teacher fine-tuning --> supernet warm-up --> candidates trained in lock-step groups --> scores; the final protocol; early-exit training.

Imports: exprsearch.lang, exprsearch.space, compiler, exprsearch.rows (the data), exprsearch.engine (the training loop).
"""
