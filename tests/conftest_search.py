"""Shared fixtures and helpers for the search-engine tests (imported by tests/test_search*.py).

Builds on conftest_kd: the tiny random BERT teacher with the real tokenizer, the synthetic
GLUE-layout data and one session cache folder, so the teacher fine-tuning and the supernet
warm-up happen once per session.  Evaluation is sized to be ~0.3 s per candidate on one CPU
thread: 2 layers, 5 KD steps, 64 training and 32 dev rows, max_len 32.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest_kd import (  # noqa: F401
    easy_glue,
    eval_config,
    kd_cache,
    one_thread,
    quiet,
    tiny_teacher,
)

# EvalConfig overrides of every search test (see the module docstring)
SEARCH_EVAL = dict(steps=5, warmup_steps=5, max_train=64, max_dev=32, max_len=32, batch_size=16, lr=1e-3,
                   teacher_epochs=0.5, latency_batch=2, latency_len=16, group=2)


@pytest.fixture(scope="session")
def search_ecfg(easy_glue, tiny_teacher, kd_cache):  # noqa: F811
    """The evaluation protocol of the search tests (SST-2, the tiny teacher, CPU)."""
    return eval_config(easy_glue, tiny_teacher, kd_cache, **SEARCH_EVAL)


def scfg(**kw: Any):
    """A small SearchConfig: stage 1 only, a few candidates, evolution with a tiny population
    (so mutation/crossover really happen within a handful of candidates)."""
    from exprsearch.search.search import SearchConfig
    base = dict(stages="1", candidates=4, population=2, tournament=2, supernet_steps=3, multitask_steps=3)
    base.update(kw)
    return SearchConfig(**base)


def run_search(store_path: Path | str, ecfg: Any, **kw: Any) -> tuple[Any, Any, list[dict[str, Any]]]:
    """Run one search into ``store_path``: (Search, summary, the run's stored rows)."""
    from exprsearch.search.search import Search
    from exprsearch.search.store import Store
    store = Store(store_path)
    search = Search(store, scfg(**kw), ecfg, log=quiet, progress=False)
    summary = search.run()
    return search, summary, store.candidates(search.run_id)


def key_score(rows: list[dict[str, Any]]) -> list[tuple[str, int, float | None]]:
    return [(r["key"], r["stage"], r["score"]) for r in rows]


class EvalSpy:
    """Records the spec text of every candidate evaluated in this process (``evaluate`` runs
    through ``evaluate_many``)."""

    def __init__(self, monkeypatch) -> None:
        from exprsearch.kd.evaluate import Evaluator
        self.specs: list[str] = []
        orig = Evaluator.evaluate_many

        def evaluate_many(ev, specs, **kw):
            self.specs.extend(str(s) for s in specs)
            return orig(ev, specs, **kw)

        monkeypatch.setattr(Evaluator, "evaluate_many", evaluate_many)

    def keys(self, search: Any) -> list[str]:
        """The dedup keys (under ``search``'s classes) of the evaluated specs, in call order."""
        from exprsearch.lang.parsing import parse_spec
        return [search.key(parse_spec(s, strict=False)) for s in self.specs]


@pytest.fixture
def eval_spy(monkeypatch) -> EvalSpy:
    return EvalSpy(monkeypatch)
