"""search options --> ``SearchConfig`` (what to search and how), and a protocol's identity (``eval_hash``).

Input: options (CLI flags, presets, a stored run's config).  Output: a frozen, checked
``SearchConfig`` -- sampler, stage sizes, budgets, the space, re-ranking, backend -- and
``eval_hash(EvalConfig)``: results are reusable across runs only under the same hash.
Invariant: every option is checked when the config is built, before a store is touched.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass

from exprsearch.errors import ConfigError
from exprsearch.kd.protocol import EXECUTION_FIELDS, NEUTRAL, EvalConfig
from exprsearch.lang.ops import REFERENCE_BINARY, REFERENCE_UNARY
from exprsearch.space.generate import Space
from exprsearch.space.samplers import make_sampler

from .pricing import Budget, parse_budget

__all__ = ["SearchConfig", "eval_hash"]


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
        for option, check in (("budget-params", Budget.parse), ("budget-flops", parse_budget)):
            value = getattr(self, option.replace("-", "_"))
            try:
                check(value)
            except ConfigError as err:  # the option named as it was typed
                raise ConfigError(f"--{option} {value!r}: {str(err).split(': ', 1)[-1]}") from None

    def space(self) -> Space:
        """The space every layer's expression is drawn from (stage 2 fixes X_Y per layer)."""
        return Space(max_depth=self.max_depth, max_size=self.max_size, unary=self.unary, binary=self.binary,
                     gates=self.gates)


def eval_hash(cfg: EvalConfig) -> str:
    """Identity of an evaluation protocol: results are reusable across runs only under the same."""
    d = asdict(cfg)
    # hurdles compare a candidate with those of earlier groups: then the group size changes results
    execution = tuple(f for f in EXECUTION_FIELDS if not (cfg.hurdles and f == "group"))
    for k in execution + tuple(k for k, v in NEUTRAL.items() if d.get(k) == v):
        d.pop(k, None)  # a field added with a neutral default keeps older stores' hashes
    if cfg.heldout_rows:  # which rows are held out (and that the teacher never saw them) changes every score
        from exprsearch.rows.holdout import HOLDOUT_RULE
        d["heldout_rule"] = HOLDOUT_RULE
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]
