"""a trained student --> exit heads and gates --> accuracy vs layers run vs wall-clock speed-up.

Training (``train_exits``): the default two-stage schedule of SmartBERT -- the backbone is the
student trained by warm-up KD (``Evaluator.train_student``); it is then frozen and the exit heads
learn from the final layer by self-distillation (FastBERT: KL(final || exit_i) at temperature T)
plus, weighted by ``exit_label_weight``, their own task loss on the labels (DeeBERT), which keeps
early exits confident where the final layer's distribution is soft.
``schedule="joint"`` trains backbone and exits together (task loss on the final layer + the
same distillation), the backbone at its own ``backbone_lr``.  Joint training pulls the shared
layers towards the early exits: measured, SST-2 loses ~0.8 points at full depth and MRPC falls
below the majority class at any backbone rate tried (5e-4, 5e-5, 1e-5) -- two-stage is the default.  Gates (``train_gates``, the gate policy): backbone and exits frozen, the
gates learn to skip layers -- soft for the first half of their steps, hard 0/1 with a
straight-through gradient after, so training ends in the mode inference uses -- with loss
KL(static final || gated final) + ``gate_cost`` x (fraction of layers run).

Measurement (``sweep``): for each setting of a policy (thresholds, patiences), the dev metric
and the mean number of layers run with batched per-example exits, and the wall-clock speed-up
over the static student on the same rows, one example at a time and in batches.

>>> [str(p) for p in settings("patience", 3)]
['PatienceExit(patience=2, tolerance=0.1)', 'PatienceExit(patience=1, tolerance=0.1)', 'PatienceExit(patience=0, tolerance=0.1)']
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F

from exprsearch.compiler.exits import EarlyExitBert, EntropyExit, GateExit, PatienceExit
from exprsearch.compiler.hf.exits_exprbert import ExitPolicy
from exprsearch.engine.group import train_one
from exprsearch.engine.train import TrainConfig, _autocast
from exprsearch.errors import ConfigError, check_number, check_whole
from exprsearch.lang.expr import ModelSpec
from exprsearch.rows.glue import Task, compute_metrics
from exprsearch.rows.tokens import Batch, Batcher, Encoded

from .distill import task_loss

if TYPE_CHECKING:
    from .protocol import EvalConfig

__all__ = ["ExitConfig", "POLICIES", "GATE_COSTS", "make_policy", "settings", "train_exits", "train_gates", "evaluate_policy",
           "time_policy", "sweep"]

POLICIES = ("entropy", "patience", "gate")
ENTROPY_SWEEP = (0.0, 0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.01)
GATE_COSTS = (0.02, 0.05, 0.1, 0.2, 0.5)  # the gate sweep: gates retrained at each compute price


@dataclass(frozen=True)
class ExitConfig:
    """Exit heads, gates and the policy (the ``exprsearch exits`` options)."""

    policy: str = "entropy"       # entropy | patience | gate
    threshold: float = 0.2        # entropy: leave below this normalised entropy; gate: also leave below it (0: skip only)
    patience: int = 2             # patience: leave after this many consecutive agreeing layers
    tolerance: float = 0.1        # patience on regression tasks: predictions closer than this agree
    schedule: str = "two-stage"   # two-stage (frozen backbone, then exits) | joint
    exit_steps: int = 200         # training steps of the exit heads
    gate_steps: int = 200         # training steps of the gates (gate policy): first half soft, then hard
    gate_cost: float = 0.1        # weight of the fraction of layers run in the gate loss (the sweep tries GATE_COSTS)
    exit_temperature: float = 2.0 # self-distillation temperature, final layer -> exits
    exit_label_weight: float = 1.0  # weight of the exits' own task loss on the labels (DeeBERT); 0: distillation only
    exit_lr: float = 5e-4         # learning rate of the exit heads
    backbone_lr: float = 5e-5     # joint: the backbone's learning rate (a fine-tune's, not the heads')
    gate_lr: float = 1e-2         # learning rate of the gates (a gate starts at p(skip) = 0.12)
    timing_rows: int = 256        # dev rows of the wall-clock measurement (0: no timing)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"unknown exit policy {self.policy!r}; choose from {', '.join(POLICIES)}")
        if self.schedule not in ("two-stage", "joint"):
            raise ConfigError(f"unknown exit schedule {self.schedule!r}; use two-stage or joint")
        check_whole(self, "patience", "timing_rows", least=0)
        check_whole(self, "exit_steps", "gate_steps", least=1)
        check_number(self, "threshold", "tolerance", "gate_cost", "exit_label_weight", least=0)
        check_number(self, "exit_temperature", "exit_lr", "backbone_lr", "gate_lr", above=0)


def make_policy(cfg: ExitConfig, value: float | None = None) -> ExitPolicy:
    """The policy object of ``cfg`` (``value`` overrides its threshold / patience)."""
    if cfg.policy == "entropy":
        return EntropyExit(cfg.threshold if value is None else value)
    if cfg.policy == "patience":
        return PatienceExit(int(cfg.patience if value is None else value), cfg.tolerance)
    return GateExit(cfg.threshold if value is None else value)


def settings(policy: str, layers: int, cfg: ExitConfig | None = None, regression: bool = False) -> list[ExitPolicy]:
    """The sweep of a policy, from 'all layers' to 'leave earliest' (regression: gates skip only)."""
    cfg = ExitConfig(policy=policy) if cfg is None else replace(cfg, policy=policy)
    if policy == "patience":
        return [make_policy(cfg, p) for p in range(layers - 1, -1, -1)]
    if policy == "gate":  # its sweep retrains the gates at each of GATE_COSTS (see ``sweep``)
        return [make_policy(cfg, 0.0 if regression else cfg.threshold)]
    return [make_policy(cfg, t) for t in ENTROPY_SWEEP]


def _self_distill(final: torch.Tensor, exit_logits: torch.Tensor, t: Task, temp: float) -> torch.Tensor:
    if t.regression:
        return F.mse_loss(exit_logits.float(), final.float())
    return F.kl_div(F.log_softmax(exit_logits.float() / temp, -1), F.softmax(final.float() / temp, -1),
                    reduction="batchmean") * temp * temp


def train_exits(model: EarlyExitBert, batches: Batcher, t: Task, device: torch.device, cfg: ExitConfig,
                *, batch_size: int = 32, max_len: int = 128, seed: int = 0) -> list[tuple[int, float]]:
    """Train the exit heads (see the module docstring); returns the loss curve."""
    joint = cfg.schedule == "joint"
    for p in model.student.parameters():
        p.requires_grad_(joint)
    model.gate_mode = "off"
    model.train()
    if not joint:  # a frozen backbone runs as at inference (no dropout): targets and features are clean
        model.student.eval()

    def loss(batch: Batch) -> torch.Tensor:
        logits, _ = model.all_logits(batch.inputs_for(model))
        final = logits[-1] if joint else logits[-1].detach()
        exits = sum(_self_distill(final.detach(), z, t, cfg.exit_temperature)
                    + cfg.exit_label_weight * task_loss(z, batch, t) for z in logits[:-1])
        mean = exits / max(1, len(logits) - 1)
        return mean + task_loss(final, batch, t) if joint else torch.as_tensor(mean)

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad and not n.startswith("gates.")]
    tc = TrainConfig(lr=cfg.exit_lr, batch_size=batch_size, steps=cfg.exit_steps, seed=seed, max_len=max_len,
                     log_every=max(1, cfg.exit_steps // 5))
    curve = train_one(loss, params, batches, tc, device,
                      lr_of=(lambda n: cfg.exit_lr if n.startswith("exits.") else cfg.backbone_lr) if joint else None)
    for p in model.student.parameters():
        p.requires_grad_(True)
    model.eval()
    return curve.loss


def train_gates(model: EarlyExitBert, batches: Batcher, t: Task, device: torch.device, cfg: ExitConfig,
                *, batch_size: int = 32, max_len: int = 128, seed: int = 0) -> list[tuple[int, float]]:
    """Train the skipping gates: soft for the first half of ``gate_steps``, then hard."""
    frozen = [p for n, p in model.named_parameters() if not n.startswith("gates.")]
    for p in frozen:
        p.requires_grad_(False)
    curve: list[tuple[int, float]] = []
    for mode, steps in (("soft", cfg.gate_steps // 2), ("hard", cfg.gate_steps - cfg.gate_steps // 2)):
        if steps <= 0:
            continue
        model.gate_mode = mode
        model.eval()  # backbone and exits frozen and without dropout; the gates have none

        def loss(batch: Batch) -> torch.Tensor:
            inputs = batch.inputs_for(model)
            with torch.no_grad():
                static = model.student(**inputs).logits
            logits, ran = model.all_logits(inputs)
            return _self_distill(static, logits[-1], t, 1.0) + cfg.gate_cost * ran.mean()

        tc = TrainConfig(lr=cfg.gate_lr, batch_size=batch_size, steps=steps, seed=seed, max_len=max_len,
                         log_every=max(1, steps // 3))
        curve += train_one(loss, [(n, p) for n, p in model.named_parameters() if n.startswith("gates.")],
                           batches, tc, device).loss
    for p in frozen:
        p.requires_grad_(True)
    model.gate_mode = "hard"
    model.eval()
    return curve


def _predictions(logits: torch.Tensor, t: Task) -> torch.Tensor:
    return logits[:, 0] if t.regression else logits.argmax(-1).float()


@torch.no_grad()
def evaluate_policy(model: EarlyExitBert, enc: Encoded, t: Task, policy: ExitPolicy, device: torch.device,
                    batch_size: int = 128) -> tuple[dict[str, float], float, torch.Tensor]:
    """(dev metrics, mean layers run, predictions in row order) with batched per-example exits."""
    model.eval()
    preds = torch.empty(len(enc), device=device)
    used = torch.empty(len(enc), device=device)
    for batch in Batcher(enc, batch_size, device=device, shuffle=False).epoch(0):
        with _autocast(device, device.type == "cuda"):
            logits, n = model.infer(batch.inputs_for(model), policy)
        preds[batch.index], used[batch.index] = _predictions(logits, t), n.float()
    return compute_metrics(t, enc.labels.tolist(), preds.tolist()), float(used.mean()), preds


@torch.no_grad()
def time_policy(model: EarlyExitBert, enc: Encoded, policy: ExitPolicy | None, device: torch.device,
                batch_size: int) -> float:
    """Seconds to predict every row of ``enc`` (``policy`` None: the static student)."""
    model.eval()
    batches = list(Batcher(enc, batch_size, device=device, shuffle=False).epoch(0))

    def once() -> None:
        for batch in batches:
            inputs = batch.inputs_for(model)
            with _autocast(device, device.type == "cuda"):
                model.student(**inputs) if policy is None else model.infer(inputs, policy)

    once()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        once()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def _setting(pol: ExitPolicy, gate_cost: float | None) -> dict[str, Any]:
    return {**{k: v for k, v in asdict(pol).items() if k != "gates"},
            **({"gate_cost": gate_cost} if gate_cost is not None else {})}


def _measure(model: EarlyExitBert, enc: Encoded, t: Task, policy: str, pol: ExitPolicy, gate_cost: float | None,
             device: torch.device) -> dict[str, Any]:
    """One trade-off row: the policy's setting, dev metrics, mean layers run."""
    metrics, layers, _ = evaluate_policy(model, enc, t, pol, device)
    return {"policy": policy, "setting": _setting(pol, gate_cost), "metrics": metrics, "score": 100 * metrics[t.main],
            "avg_layers": layers, "layer_ratio": len(model.layers) / layers, "device": device.type}


def sweep(model: EarlyExitBert, enc: Encoded, t: Task, policy: str, device: torch.device, cfg: ExitConfig,
          log: Callable[[str], None] = lambda m: None, retrain_gates: Callable[[float], None] | None = None
          ) -> list[dict[str, Any]]:
    """One row per setting of ``policy``: metric, mean layers run, speed-ups (batch 1 and 32).
    The gate policy's settings are compute prices: with ``retrain_gates(cost)`` the gates are
    retrained at each of ``GATE_COSTS``; without it, the gates as they are make one row."""
    n = len(model.layers)
    timing = enc.subset(min(cfg.timing_rows, len(enc))) if cfg.timing_rows else None
    static = {b: time_policy(model, timing, None, device, b) for b in (1, 32)} if timing is not None else {}
    rows = []
    pols = settings(policy, n, cfg, t.regression)
    plan = [(c, pols[0]) for c in GATE_COSTS] if policy == "gate" and retrain_gates else [(None, p) for p in pols]
    for cost, pol in plan:
        if cost is not None:
            retrain_gates(cost)  # type: ignore[misc]
        row = {**_measure(model, enc, t, policy, pol, cost, device), "timing_rows": len(timing) if timing else 0}
        layers = row["avg_layers"]
        if timing is not None:
            for b, base in static.items():
                row[f"speedup_b{b}"] = base / time_policy(model, timing, pol, device, b)
        rows.append(row)
        log(f"{policy} {row['setting']}: {t.main} {row['score']:.2f}, {layers:.2f} of {n} layers"
            + (f", speed-up x{row['speedup_b1']:.2f} (batch 1), x{row['speedup_b32']:.2f} (batch 32)" if static else ""))
    return rows


def run_exits(spec: ModelSpec, task_name: str, ecfg: EvalConfig, xcfg: ExitConfig, *,
              policies: tuple[str, ...] | None = None, log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Train ``spec`` by warm-up KD on one task, add exit heads (and gates), sweep the policies.

    Returns {"spec", "task", "static": metrics of the plain student (held-out ``heldout_*`` and
    dev), "rows": {policy: sweep rows, on the held-out rows when the protocol holds rows out --
    ``swept_on`` says which -- since a threshold is picked from them}, "chosen": {policy: the
    configured setting measured on dev}}."""
    from .evaluate import Evaluator
    from exprsearch.rows.glue import task
    policies = policies or (xcfg.policy,)
    if task(task_name).regression:  # no class distribution: entropy is undefined, gates skip without an entropy exit
        if policies == ("entropy",):
            raise ConfigError(f"{task_name} is a regression task: the entropy policy needs classes; use patience or gate")
        policies = tuple(p for p in policies if p != "entropy")
        xcfg = replace(xcfg, threshold=0.0)
    ev = Evaluator(replace(ecfg, tasks=(task_name,)), log=log)
    student, st, static = ev.train_student(spec, task_name)
    device = ev.device
    model = EarlyExitBert(student).to(device)
    kw = dict(batch_size=ecfg.batch_size, max_len=ecfg.max_len, seed=ecfg.seed)
    log(f"training exit heads ({xcfg.schedule}, {xcfg.exit_steps} steps)")
    train_exits(model, st.train, st.task, device, xcfg, **kw)

    def gates_at(cost: float) -> None:
        log(f"training skipping gates at compute price {cost} ({xcfg.gate_steps} steps: soft, then hard)")
        model.reset_gates()
        train_gates(model, st.train, st.task, device, replace(xcfg, gate_cost=cost), **kw)

    out: dict[str, Any] = {"spec": str(spec), "task": task_name, "static": static, "layers": len(model.layers),
                           "rows": {}, "chosen": {}}
    swept, out["swept_on"] = st.scored(ev.cfg)  # a threshold is chosen from the sweep: held-out rows, not dev
    for pol in policies:
        rows = sweep(model, swept, st.task, pol, device, xcfg, log, gates_at if pol == "gate" else None)
        if pol == "gate":
            gates_at(xcfg.gate_cost)
        chosen = make_policy(replace(xcfg, policy=pol))
        pick = _measure(model, st.dev, st.task, pol, chosen, xcfg.gate_cost if pol == "gate" else None, device)
        if xcfg.timing_rows and device.type != "cpu":  # the same trade on CPU, one example at a time
            cpu, rows_cpu = torch.device("cpu"), st.dev.subset(min(64, len(st.dev))).to("cpu")
            model.to(cpu)
            pick["cpu_speedup_b1"] = time_policy(model, rows_cpu, None, cpu, 1) / time_policy(model, rows_cpu, chosen, cpu, 1)
            model.to(device)
        out["rows"][pol], out["chosen"][pol] = rows, pick
    return out
