"""named bundles of settings: the search presets (search options + evaluation protocol) and the
evaluation presets of ``exprsearch eval`` / the REPL.  Explicit options always win over a preset.

>>> sorted(SEARCH_PRESETS), sorted(EVAL_PRESETS)
(['gpu', 'paper', 'quick'], ['cpu', 'gpu', 'paper', 'quick'])
"""
from __future__ import annotations

__all__ = ["SEARCH_PRESETS", "EVAL_PRESETS"]

SEARCH_PRESETS: dict[str, tuple[dict, dict]] = {  # (search options, eval options)
    # the README's main job: 2 CPU cores, SST-2 (4,000 training rows; 1,000 whole sentences held out to
    # rank on, the dev set reported only), default teacher, < 10 minutes; few but long enough candidates
    # that the leaderboard is above noise
    "quick": (dict(candidates=12, stage2_candidates=6, stage3_candidates=4, supernet_steps=30, multitask_steps=60,
                   population=6, tournament=3, rerank=1, rerank_seeds=1),
              dict(tasks=("SST-2",), max_train=4000, max_dev=None, max_len=64, batch_size=16, lr=2e-4, steps=60,
                   warmup_steps=100, teacher_epochs=1.0, teacher_batch=16, latency_batch=4, latency_len=32,
                   group=4, warmup_sampling="space", heldout_rows=1000, score_on="heldout")),
    # one GPU (BENCHMARKS.md): four tasks, the strong teacher recipe, batch 128, candidates trained in
    # lock-step with CUDA graphs; group size and worker processes sized to the card's free memory
    # (up to 2 workers x 16: what an H200 fits)
    "gpu": (dict(candidates=300, stage2_candidates=100, stage3_candidates=32, supernet_steps=300,
                 multitask_steps=300, batch=32, population=32, tournament=8, budget_params="standard",
                 rerank=10, rerank_seeds=2),
            dict(tasks=("MRPC", "RTE", "CoLA", "SST-2"), batch_size=128, lr=2e-4,
                 task_steps="MRPC=75,RTE=50,CoLA=100,SST-2=150", warmup_steps=600, teacher_epochs=5.0,
                 teacher_task_epochs="SST-2=3", teacher_batch=32, warmup_sampling="space", heldout_rows=2000,
                 score_on="heldout")),
    # the reference method's scale: MNLI, long stages (days on one GPU; use Ray)
    "paper": (dict(candidates=1000, stage2_candidates=500, stage3_candidates=200, supernet_steps=5000,
                   multitask_steps=10000),
              dict(tasks=("MNLI",), steps=3000, warmup_steps=20000, teacher_epochs=3.0, heldout_rows=5000,
                   score_on="heldout")),
}

EVAL_PRESETS: dict[str, dict] = {name: e for name, (_, e) in SEARCH_PRESETS.items()} | {
    # one candidate on the CPU in about a minute: the bundled slices, a few steps (the REPL's :eval)
    "cpu": dict(max_train=200, max_dev=100, max_len=64, steps=30, warmup_steps=30, teacher_epochs=1,
                batch_size=16, layers=6, heldout_rows=200, score_on="heldout"),
}
