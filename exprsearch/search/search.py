"""search config --> stored, ranked candidates: the progressive three-stage search.

The loop reads as the pipeline: sample -> (valid by construction) -> canonicalise -> dedup
against this run and the store -> price (params/FLOPs budget) -> evaluate (warm-up KD, on a
backend) -> store -> update the sampler.  Stages (EfficientBERT): 1 searches each layer's
expression, X and Y jointly; 2 searches the expressions with each layer's X_Y fixed from stage 1's
best (evolution starts from mutations of that best, not from a random population: the H200 run's
random-started stage 2 spent its 50 candidates well below stage 1's level); after each of them
the top candidates may be re-scored over more seeds (``rerank.py``); 3 searches X_Y per layer
with the bodies fixed, on a weight-sharing supernet (``stage3.py``).
Invariants: every completed evaluation is committed before the next batch starts, so
``resume`` after ``kill -9`` loses nothing and re-evaluates nothing; batches are proposed and
observed in a fixed order, so a seed gives the same search on every backend.
"""
from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Callable

from exprsearch.errors import ConfigError
from exprsearch.kd.protocol import EvalConfig
from exprsearch.lang.canon import canonicalize
from exprsearch.lang.dedup import Deduper
from exprsearch.lang.expr import ModelSpec
from exprsearch.space.fit import fit
from exprsearch.space.generate import Space
from exprsearch.space.samplers import SAMPLERS, make_sampler

from .config import SearchConfig, eval_hash
from .failures import FailureWatch
from .liveness import Terminated, owner, sigterm_as_interrupt
from .pricing import Budget, Price, parse_budget, price_spec, resolve, teacher_price
from .store import Store, StoreError, row_spec

if TYPE_CHECKING:
    from exprsearch.kd.evaluate import Evaluator

    from .backends import Backend

__all__ = ["SearchConfig", "Search", "eval_hash", "parse_budget"]  # SearchConfig, eval_hash: config.py; parse_budget: pricing.py


class Search:
    """One run: ``Search(store, scfg, ecfg).run()``; ``Search.resume(store, run_id).run()``."""

    def __init__(self, store: Store, scfg: SearchConfig, ecfg: EvalConfig, run_id: str | None = None,
                 log: Callable[[str], None] | None = None, progress: bool = True) -> None:
        if ecfg.warmup_sampling == "space" and run_id is None:  # the warm-up draws from this search's space
            ecfg = dataclasses.replace(ecfg, warmup_space=scfg.space().describe())
        self.store, self.scfg, self.ecfg = store, scfg, ecfg
        self.log = log or (lambda m: print(m, file=sys.stderr))
        self.progress = progress
        self.hash = eval_hash(ecfg)
        if run_id is None:
            self._check_selection()
        self.budget, self.budget_flops = Budget.parse(scfg.budget_params), parse_budget(scfg.budget_flops)
        # the most parameters of the budget's kind, and the width-matched standard FFN (the baseline);
        # a budget no standard FFN fits is refused here, before the store holds a run
        self.budget_params, self._baseline = resolve(
            self.budget, self.budget_flops, self.prices, ecfg.layers,
            ecfg.base_width or self._teacher_config()["hidden_size"],
            lambda: teacher_price(self._teacher_config(), self._labels()))
        self.run_id = run_id or store.new_run({"search": asdict(scfg), "eval": asdict(ecfg),
                                               "baseline": str(self._baseline)})
        d_over_h = ecfg.base_width / self._teacher_config()["hidden_size"] if ecfg.base_width else 1.0
        self.dedup = Deduper(base_ratio=d_over_h, use_sympy=False)  # D / H decides which widths an expression cuts
        self._reps: dict[str, Any] = {}
        self.seen: set[str] = set()
        self.stats = {"evaluated": 0, "reused": 0, "duplicates": 0, "over_budget": 0, "fitted": 0, "failed": 0,
                      "reseeded": 0}
        self._backend: Backend | None = None
        self._evaluator: Evaluator | None = None
        self.watch = FailureWatch(store, self.run_id)
        self._t0 = time.perf_counter()
        self._eval_t0: float | None = None  # when this process started evaluating
        self._prior: dict[str, dict[str, Any]] = {}  # this protocol's stored results, by this process's keys
        for row in store:  # prime class representatives so keys agree with earlier runs
            key = self._rekey(row)
            if row["run_id"] == self.run_id:
                self.seen.add(key)
            if row["eval_hash"] == self.hash and row["status"] != "failed" and "@" not in row["key"]:
                self._prior.setdefault(key, row)
        self.baseline_key = self.key(self._baseline)

    def _check_selection(self) -> None:
        if not self.ecfg.selects_on_heldout:
            raise ConfigError("a search selects candidates, so it ranks them on held-out training rows, never on "
                              "the dev rows it reports: hold rows out (--heldout-rows N, e.g. 1000) and score on "
                              "them (--score-on heldout)")

    @classmethod
    def resume(cls, store: Store, run_id: str, **kw: Any) -> "Search":
        cfg = store.run(run_id)["config"]
        cfg["search"].setdefault("stage2_start", "random")  # a run stored before the option began randomly
        fields = lambda c: {f.name for f in dataclasses.fields(c)}  # noqa: E731
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["search"].items()
                                  if k in fields(SearchConfig)}
        scfg = SearchConfig(**values)
        return cls(store, scfg, EvalConfig.from_stored(cfg["eval"]), run_id=run_id, **kw)

    # -- identity, price ----------------------------------------------------------------------------
    def key(self, spec: ModelSpec) -> str:
        """The spec with each layer's expression replaced by its dedup class representative:
        equivalent expressions in any layer give one key; attention parts and depth are kept."""
        reps = []
        for e in spec.layers:
            k = self.dedup.add(e).key
            if k not in self._reps:  # met first here: its canonical form is the class's key
                self._reps[k] = canonicalize(e)
            reps.append(self._reps[k])
        return str(ModelSpec(tuple(reps), spec.attn, spec.hidden))

    def _rekey(self, row: dict[str, Any]) -> str:
        """A stored row's key under this process's class representatives.  A class is named by the
        member met first, and the process that stored the row may have met another member first
        (a proposal never stored: over budget, or arrival order on several workers), so a resumed
        run matches its stored rows by their specs, not by the stored key strings."""
        spec = row_spec(row["spec"]) if "@" not in row["key"] else None  # stage 3's assignment keys keep theirs
        return row["key"] if spec is None else self.key(spec)  # (a row of another version keeps its key)

    def _teacher_config(self) -> dict[str, Any]:
        if not hasattr(self, "_tc"):
            from pathlib import Path

            from exprsearch.kd.teacher import check_teacher_dir, default_teacher_dir
            from exprsearch.compiler.teachers import teacher_shape
            d = check_teacher_dir(Path(self.ecfg.teacher) if self.ecfg.teacher else default_teacher_dir())
            self._tc = teacher_shape(json.loads((d / "config.json").read_text()))  # under BERT's key names
        return self._tc

    def standard(self) -> ModelSpec:
        """The run's baseline: the standard FFN at full width, or under a budget the widest
        ``linear1_Y(gelu(linear1_Y(x,wb1)),wb2)`` within it (``pricing.resolve``: the width-matched
        standard FFN; a budget that none fits is refused when the search is made).  Stage 1
        starts from it, it is evaluated like any candidate, and every comparison is with it."""
        return self._baseline

    def _labels(self) -> int:
        from exprsearch.rows.glue import task
        return task(self.ecfg.tasks[0]).num_labels

    def prices(self, spec: ModelSpec) -> Price:
        """The cost model's price of ``spec`` (``pricing.py``): what the evaluator stores (first
        task's head, sequence length min(max_len, 128))."""
        return price_spec(spec, self.ecfg, self._teacher_config(), self._labels())

    def price(self, spec: ModelSpec) -> tuple[int, float]:
        """(student parameters, whole-model matmul FLOPs per token)."""
        p = self.prices(spec)
        return p.params, p.flops

    def over_budget(self, spec: ModelSpec) -> bool:
        if self.budget is None and self.budget_flops is None:
            return False
        p = self.prices(spec)
        return ((self.budget is not None and self.budget_params is not None
                 and self.budget.measure(p) > self.budget_params)
                or (self.budget_flops is not None and p.flops > self.budget_flops))

    # -- the loop ---------------------------------------------------------------------------------
    def backend(self) -> Backend:
        if self._backend is None:
            from .backends import make_backend
            s = self.scfg
            self._backend = make_backend(s.backend, self.ecfg, s.workers, s.ray_address or None,
                                         s.gpus_per_worker, log=self.log)
        return self._backend

    def evaluator(self) -> Evaluator:
        """An ``Evaluator`` in this process (stage 3 trains here): the in-process backend's, else
        a new one -- after closing a worker pool, whose processes hold the GPU's memory."""
        from .backends import InlineBackend
        if isinstance(self._backend, InlineBackend):
            return self._backend.evaluator
        if self._evaluator is None:
            if self._backend is not None:
                self._backend.close()
                self._backend = None
            from exprsearch.kd.evaluate import Evaluator
            self._evaluator = Evaluator(self.ecfg, log=self.log)
        return self._evaluator

    def spaces(self, stage: int) -> list[Space]:
        space = self.scfg.space()
        if stage == 1:
            return [space] * self.ecfg.layers
        fixed = self.spec_of(self._best_row(1)).layers  # depth and X_Y of stage 1's winner
        return [dataclasses.replace(space, blocks=(e.linears()[0].op.blocks,), ratios=(e.linears()[0].op.ratio,))
                for e in fixed]

    def run(self) -> dict[str, Any]:
        stages = [int(x) for x in self.scfg.stages.split(",") if x.strip()]
        if any(s not in (1, 2, 3) for s in stages):
            raise ConfigError(f"stages {self.scfg.stages!r}: choose from 1,2,3")
        self._check_selection()
        self.store.set_status(self.run_id, "running", owner())  # show tells a run whose process is gone
        restore = sigterm_as_interrupt()  # kill PID stops the run as Ctrl-C does: marked, workers closed
        try:
            for stage in stages:
                if stage in (1, 2):
                    n = self.scfg.candidates if stage == 1 else (self.scfg.stage2_candidates
                                                                  if self.scfg.stage2_candidates >= 0
                                                                  else self.scfg.candidates // 2)
                    if stage == 2 and not self.store.candidates(self.run_id, status="ok"):
                        self.log("stage 2 skipped: no successful stage-1 candidate")
                        continue
                    self.stage(stage, n)
                    from .rerank import rerank
                    rerank(self)
                else:
                    from .stage3 import run_stage3
                    run_stage3(self)
            self.store.set_status(self.run_id, "done")
        except KeyboardInterrupt as err:
            self.store.set_status(self.run_id, "interrupted", str(err) if isinstance(err, Terminated)
                                  else "stopped by the user (Ctrl-C)")
            raise
        except BaseException as err:  # the run is marked failed, with why; the error goes on to the caller
            self.store.set_status(self.run_id, "failed", f"{type(err).__name__}: {err}"[:2000])
            raise
        finally:
            restore()
            if self._backend is not None:
                self._backend.close()
        return self.summary()

    def stage(self, stage: int, budget: int) -> None:
        """One stage: generations of ``batch`` proposals, resolved in proposal order -- from this
        run's store (a resumed run), from an earlier run (same protocol), or by evaluation --
        then committed and observed.  The sequence depends only on the seed and the results, not
        on the backend, the worker count or where a run was interrupted."""
        spaces = self.spaces(stage)
        rng = random.Random(self.scfg.seed * 1000 + stage)
        fit_rng = random.Random(f"fit/{self.scfg.seed}/{stage}")  # shrinks over-budget proposals
        seeds = []
        if stage == 1 and self.scfg.seed_standard:
            seeds = [self.standard()]
        elif stage == 2:
            best1 = self._best_row(1)
            seeds = [self.spec_of(best1)]
        from exprsearch.space.samplers import parse_attn_choices
        arch = {"attn_choices": parse_attn_choices(self.scfg.attn_choices), "depths": list(self.scfg.depths)}
        if stage == 2:  # sizes, attention and depth fixed from stage 1's best
            arch = {"fixed_attn": seeds[0].attn} if seeds[0].attn is not None else {}
        local = stage == 2 and self.scfg.stage2_start == "local" and SAMPLERS[self.scfg.sampler].local_start
        sampler = make_sampler(self.scfg.sampler, spaces, rng, [] if local else seeds, options=self.scfg, **arch)
        if local:  # stage 1's best is already evaluated (a duplicate if proposed): the sampler starts from it
            sampler.start_from(seeds[0], best1["score"])
        rows = self.store.candidates(self.run_id, seeds=False)  # first-seed scores: what the sampler saw
        stored = {self._rekey(r): r for r in rows if r["stage"] == stage}  # a resumed run's own results
        self.seen = {self._rekey(r) for r in rows if r["stage"] != stage}
        count, misses = 0, 0
        self.log(f"stage {stage}: {budget} candidates with the {sampler.name} sampler"
                 + (f" ({len(stored)} already stored: replaying them)" if stored else ""))
        while count < budget:
            gen: list[tuple[str, ModelSpec]] = []
            while len(gen) < min(self.scfg.batch, budget - count) and misses < 2000:
                proposed = sampler.propose()
                spec = fit(proposed, spaces, self.over_budget, fit_rng)  # over budget: the same bodies, smaller
                if spec is None:
                    self.stats["over_budget"] += 1
                    misses += 1
                    sampler.observe(proposed, None)
                    continue
                self.stats["fitted"] += spec is not proposed
                key = self.key(spec)
                if key in self.seen or any(k == key for k, _ in gen):
                    self.stats["duplicates"] += 1
                    misses += 1
                    sampler.duplicate(spec)
                    continue
                misses = 0
                gen.append((key, spec))
            if not gen:
                if misses >= 2000:
                    self.log(f"stage {stage}: the space looks exhausted (2000 proposals in a row were "
                             f"duplicates or over budget); stopping at {count} candidates")
                break
            results: dict[str, dict[str, Any]] = {}
            todo = []
            for key, spec in gen:
                if key in stored:
                    results[key] = stored[key]
                elif (prior := self._prior.get(key) or self.store.lookup(key, self.hash)) is not None:
                    results[key] = {**prior, "worker": "reused"}
                    self.stats["reused"] += 1
                else:
                    todo.append((key, spec))
            specs = dict(gen)

            def commit(key: str, r: dict[str, Any]) -> None:  # as soon as each result exists
                self.store.add(self.run_id, {**r, "key": key, "spec": str(specs[key])}, eval_hash=self.hash,
                               stage=stage, config={"eval": self.hash, "baseline": key == self.baseline_key},
                               worker=r.get("worker", ""))
                if r.get("worker") != "reused":
                    self.stats["evaluated"] += 1
                    self.stats["failed"] += r["status"] == "failed"
                    self.watch.observe(key, r)  # a run of one systemic failure stops the run here

            for key, spec in gen:
                if key in results and key not in stored:
                    commit(key, results[key])  # reused from an earlier run
            if todo:
                backend = self.backend()  # started (workers ready) before the clock of the rate starts
                if self._eval_t0 is None:
                    self._eval_t0 = time.perf_counter()
                results.update(backend.run(todo, on_result=commit))
            for key, spec in gen:  # observe in proposal order: the sampler sees a fixed sequence
                r = results[key]
                self.seen.add(key)
                count += 1
                sampler.observe(spec, r["score"] if r["status"] == "ok" else None)
            self._report(stage, count, budget)
        self.watch.stage_done(stage)

    def _report(self, stage: int, count: int, budget: int) -> None:
        if not self.progress:
            return
        best = self.best()
        n = self.stats["evaluated"]  # in this process: a resumed run's replayed rows do not count
        if n and self._eval_t0 is not None:
            rate = n / max(1e-9, time.perf_counter() - self._eval_t0)
            speed = f"{3600 * rate:.0f}/h | stage ETA {(budget - count) / rate:.0f}s"
        else:
            speed = "rate and ETA after the first evaluation"
        self.log(f"[stage {stage}] {count}/{budget} done | evaluated {n} "
                 f"failed {self.stats['failed']} dup {self.stats['duplicates']} reused {self.stats['reused']} "
                 f"over-budget {self.stats['over_budget']} (fitted {self.stats['fitted']}) | best {best['score']:.2f} | {speed}" if best else
                 f"[stage {stage}] {count}/{budget} done (no successful candidate yet)")

    def spec_of(self, row: dict[str, Any]) -> ModelSpec:
        """The parsed spec of a stored row the run goes on from (stage 1's best, a stage-3 winner, a
        re-ranked candidate): a ``StoreError`` where this version cannot read it (``row_spec``)."""
        spec = row_spec(row["spec"])
        if spec is None:
            raise StoreError(f"run {self.run_id}: stored spec {row['spec']!r} cannot be read by this version")
        return spec

    def _best_row(self, stage: int) -> dict[str, Any]:
        """Stage ``stage``'s best stored row: where stage ``stage + 1`` starts."""
        best = self.best(stage=stage)
        if best is None:
            raise ConfigError(f"stage {stage + 1} starts from stage {stage}'s best candidate: run {self.run_id} "
                              f"has none (run stage {stage} first)")
        return best

    def best(self, stage: int | None = None) -> dict[str, Any] | None:
        rows = [r for r in self.store.candidates(self.run_id, status="ok") if stage is None or r["stage"] == stage]
        return max(rows, key=lambda r: r["score"]) if rows else None

    def summary(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "stats": self.stats, "best": self.best(),
                "seconds": time.perf_counter() - self._t0}


