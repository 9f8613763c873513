"""warm-up knowledge distillation: GLUE data --> tokens --> teacher fine-tuning --> supernet warm-up --> candidates trained in lock-step groups --> dev scores; early-exit training.

Imports: exprsearch.lang, exprsearch.space, compiler.
"""
