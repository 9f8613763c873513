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
import hashlib
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from exprsearch.errors import ConfigError
from exprsearch.kd.protocol import EXECUTION_FIELDS, NEUTRAL, EvalConfig
from exprsearch.lang.dedup import Deduper
from exprsearch.lang.expr import ModelSpec
from exprsearch.lang.ops import REFERENCE_BINARY, REFERENCE_UNARY
from exprsearch.lang.ops import RATIO_CHOICES
from exprsearch.lang.standard import STANDARD_SPEC, standard_ffn
from exprsearch.lang.canon import canonicalize
from exprsearch.space.generate import Space
from exprsearch.space.samplers import SAMPLERS, make_sampler

from .failures import FailureWatch
from .pricing import Budget, Price, parse_budget, price_spec, teacher_price
from .store import Store, row_spec

__all__ = ["SearchConfig", "Search", "eval_hash", "parse_budget"]  # parse_budget: from pricing.py


@dataclass(frozen=True)
class SearchConfig:
    """What to search and how."""

    sampler: str = "evolution"           # random | evolution | lanas
    candidates: int = 200                # evaluations in stage 1
    stage2_candidates: int = -1          # evaluations in stage 2 (-1: half of candidates)
    stage3_candidates: int = 32          # X_Y assignments ranked on the supernet in stage 3
    stages: str = "1,2,3"                # stages to run (any of 1,2,3)
    budget_params: str = ""              # max student parameters, e.g. 16M, or 'standard' (the standard-FFN
                                         # student's count); '' = none
    budget_flops: str = ""               # max matmul FLOPs per token, e.g. 20M ('' = none)
    max_depth: int = 6                   # depth limit of each layer's expression
    max_size: int = 8                    # size limit of each layer's expression
    unary: tuple[str, ...] = REFERENCE_UNARY    # unary operators in the space
    binary: tuple[str, ...] = REFERENCE_BINARY  # binary operators in the space
    gates: bool = False                  # also gated FFNs, e.g. GEGLU: a wb3 gate beside wb1 (an extension)
    population: int = 16                 # evolution: population size
    tournament: int = 4                  # evolution: tournament size
    seed_standard: bool = True           # start from the standard FFN (as the reference does)
    attn_choices: str = ""               # per-layer attention options, e.g. std|mha(heads=6)|lsra(heads=6, kernel=7)
    depths: tuple[int, ...] = ()         # layer counts to try (shallower ones: LayerDrop extraction)
    supernet_steps: int = 300            # stage 3: supernet training steps per task
    multitask_steps: int = 300           # stage 3: multi-task fine-tuning steps of the winner
    backend: str = "local"               # local | ray
    workers: int = 0                     # parallel evaluations (processes or Ray actors; 0: sized to the GPU, 1 on the CPU)
    batch: int = 4                       # candidates proposed per generation (fixed: the search does
                                         # not depend on the number of workers)
    ray_address: str = ""                # Ray cluster address ('' = start a local one)
    gpus_per_worker: float = 0.0         # Ray: GPUs per actor (e.g. 0.33 to share one GPU by three)
    stage2_start: str = "local"          # stage 2's first population: local (mutations of stage 1's best) | random
    rerank: int = 0                      # after stages 1 and 2: re-score the top N with more seeds (0: off)
    rerank_seeds: int = 2                # extra training seeds of each re-scored candidate
    seed: int = 0                        # the search's random seed

    def __post_init__(self) -> None:
        from exprsearch.errors import check_whole
        from exprsearch.lang.dsl_errors import FIELD_MAX
        from exprsearch.space.samplers import SAMPLERS, parse_attn_choices
        if self.sampler not in SAMPLERS:
            make_sampler(self.sampler, [], random.Random(0))  # raises ConfigError with a suggestion
        if self.backend not in ("local", "ray"):
            raise ConfigError(f"unknown backend {self.backend!r}; choose local or ray")
        if any(x.strip() not in ("1", "2", "3") for x in self.stages.split(",") if x.strip()):
            raise ConfigError(f"stages {self.stages!r}: choose from 1,2,3")
        check_whole(self, "candidates", "batch", "population", "tournament", "stage3_candidates", "supernet_steps",
                    "multitask_steps", least=1)
        check_whole(self, "stage2_candidates", least=-1)
        check_whole(self, "depths", least=1, most=FIELD_MAX["layers"], each=True)
        if self.sampler == "evolution" and self.tournament > self.population:
            raise ConfigError(f"tournament {self.tournament} is larger than the population {self.population}")
        Space(max_depth=self.max_depth, max_size=self.max_size, unary=self.unary, binary=self.binary)  # its checks
        parse_attn_choices(self.attn_choices)
        if self.workers < 0:
            raise ConfigError("workers must be at least 1 (or 0: sized to the device)")
        if self.stage2_start not in ("local", "random"):
            raise ConfigError(f"stage2_start {self.stage2_start!r}: choose local or random")
        if self.rerank < 0 or self.rerank_seeds < 0:
            raise ConfigError("rerank and rerank_seeds must be >= 0")
        Budget.parse(self.budget_params)
        parse_budget(self.budget_flops)


def eval_hash(cfg: EvalConfig) -> str:
    """Identity of an evaluation protocol: results are reusable across runs only under the same."""
    d = asdict(cfg)
    # hurdles compare a candidate with those of earlier groups: then the group size changes results
    execution = tuple(f for f in EXECUTION_FIELDS if not (cfg.hurdles and f == "group"))
    for k in execution + tuple(k for k, v in NEUTRAL.items() if d.get(k) == v):
        d.pop(k, None)  # a field added with a neutral default keeps older stores' hashes
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Search:
    """One run: ``Search(store, scfg, ecfg).run()``; ``Search.resume(store, run_id).run()``."""

    def __init__(self, store: Store, scfg: SearchConfig, ecfg: EvalConfig, run_id: str | None = None,
                 log: Callable[[str], None] | None = None, progress: bool = True) -> None:
        self.store, self.scfg, self.ecfg = store, scfg, ecfg
        self.log = log or (lambda m: print(m, file=sys.stderr))
        self.progress = progress
        self.hash = eval_hash(ecfg)
        self.run_id = run_id or store.new_run({"search": asdict(scfg), "eval": asdict(ecfg)})
        d_over_h = ecfg.base_width / self._teacher_config()["hidden_size"] if ecfg.base_width else 1.0
        self.dedup = Deduper(base_ratio=d_over_h, use_sympy=False)  # D / H decides which widths an expression cuts
        self._reps: dict[str, Any] = {}
        self.seen: set[str] = set()
        self.stats = {"evaluated": 0, "reused": 0, "duplicates": 0, "over_budget": 0, "failed": 0, "reseeded": 0}
        self.budget, self.budget_flops = Budget.parse(scfg.budget_params), parse_budget(scfg.budget_flops)
        self.budget_params = None if self.budget is None else self.budget.limit(  # the most of its kind
            self.prices(STANDARD_SPEC.broadcast(ecfg.layers)) if self.budget.standard else None,
            teacher_price(self._teacher_config(), self._labels()) if self.budget.share else None)
        self._backend: Any = None
        self._evaluator: Any = None
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

    @classmethod
    def resume(cls, store: Store, run_id: str, **kw: Any) -> "Search":
        cfg = store.run(run_id)["config"]
        cfg["search"].setdefault("stage2_start", "random")  # a run stored before the option began randomly
        fields = lambda c: {f.name for f in dataclasses.fields(c)}  # noqa: E731
        scfg = SearchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["search"].items()
                               if k in fields(SearchConfig)})
        ecfg = EvalConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["eval"].items()
                             if k in fields(EvalConfig)})
        return cls(store, scfg, ecfg, run_id=run_id, **kw)

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
            d = check_teacher_dir(Path(self.ecfg.teacher) if self.ecfg.teacher else default_teacher_dir())
            self._tc = json.loads((d / "config.json").read_text())
        return self._tc

    def standard(self) -> ModelSpec:
        """The standard FFN the search starts from: full width, or under a parameter budget the
        widest ``linear1_Y(gelu(linear1_Y(x,wb1)),wb2)`` within it (the width-matched baseline)."""
        for y in RATIO_CHOICES:
            spec = ModelSpec((standard_ffn(1, y),)).broadcast(self.ecfg.layers)
            if not self.over_budget(spec):
                return spec
        return STANDARD_SPEC.broadcast(self.ecfg.layers)

    def _labels(self) -> int:
        from exprsearch.kd.glue import task
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
        return ((self.budget is not None and self.budget.measure(p) > self.budget_params)
                or (self.budget_flops is not None and p.flops > self.budget_flops))

    # -- the loop ---------------------------------------------------------------------------------
    def backend(self) -> Any:
        if self._backend is None:
            from .backends import make_backend
            s = self.scfg
            self._backend = make_backend(s.backend, self.ecfg, s.workers, s.ray_address or None,
                                         s.gpus_per_worker, log=self.log)
        return self._backend

    def evaluator(self) -> Any:
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
        s = self.scfg
        base = dict(max_depth=s.max_depth, max_size=s.max_size, unary=s.unary, binary=s.binary, gates=s.gates)
        if stage == 1:
            return [Space(**base)] * self.ecfg.layers
        best = self.best(stage=1)
        fixed = row_spec(best["spec"]).layers  # depth and X_Y of stage 1's winner
        return [Space(**base, blocks=(e.linears()[0].op.blocks,), ratios=(e.linears()[0].op.ratio,))
                for e in fixed]

    def run(self) -> dict[str, Any]:
        stages = [int(x) for x in self.scfg.stages.split(",") if x.strip()]
        if any(s not in (1, 2, 3) for s in stages):
            raise ConfigError(f"stages {self.scfg.stages!r}: choose from 1,2,3")
        self.store.set_status(self.run_id, "running")
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
        except KeyboardInterrupt:
            self.store.set_status(self.run_id, "interrupted", "stopped by the user (Ctrl-C)")
            raise
        except BaseException as err:  # the run is marked failed, with why; the error goes on to the caller
            self.store.set_status(self.run_id, "failed", f"{type(err).__name__}: {err}"[:2000])
            raise
        finally:
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
        seeds = []
        if stage == 1 and self.scfg.seed_standard:
            seeds = [self.standard()]
        elif stage == 2:
            best1 = self.best(stage=1)
            seeds = [row_spec(best1["spec"])]
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
                spec = sampler.propose()
                key = self.key(spec)
                if key in self.seen or any(k == key for k, _ in gen):
                    self.stats["duplicates"] += 1
                    misses += 1
                    sampler.duplicate(spec)
                    continue
                if self.over_budget(spec):
                    self.stats["over_budget"] += 1
                    misses += 1
                    sampler.observe(spec, None)
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
                               stage=stage, config={"eval": self.hash}, worker=r.get("worker", ""))
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
                 f"over-budget {self.stats['over_budget']} | best {best['score']:.2f} | {speed}" if best else
                 f"[stage {stage}] {count}/{budget} done (no successful candidate yet)")

    def best(self, stage: int | None = None) -> dict[str, Any] | None:
        rows = [r for r in self.store.candidates(self.run_id, status="ok") if stage is None or r["stage"] == stage]
        return max(rows, key=lambda r: r["score"]) if rows else None

    def summary(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "stats": self.stats, "best": self.best(),
                "seconds": time.perf_counter() - self._t0}


