"""a long training, stopped half-way --> the same training, continued: checkpoints of ``train_one``.

Input: the ``random.Random`` instances a training's loss draws from (a supernet's sub-model
draws), a file and how often to write it.  Output: at ``train_one``'s log points (at most every
``every_s`` seconds) one file holding the step, the trained parameters (by name: a supernet's own,
never its swapped views), the optimizer's state and every random state (Python's, torch's,
CUDA's); ``restore`` loads it into a fresh training, which then skips the batches already seen and
goes on from the next step.
Invariants: a continued training computes what an uninterrupted one does, bit for bit on the CPU
(same weights, optimizer moments, batches, draws and dropout masks from the step on); the file is
written aside and renamed, so a kill while writing leaves the previous checkpoint; a checkpoint of
another training (another recipe: the caller's file name says which) is never read, and nothing
but tensors and plain values is unpickled (``weights_only``).

>>> import random, tempfile, torch
>>> from pathlib import Path
>>> from .group import train_one
>>> from exprsearch.rows.tokens import Batcher, Encoded
>>> from .train import TrainConfig
>>> enc = Encoded(torch.randint(1, 50, (32, 6)), torch.zeros(32, 6, dtype=torch.long), torch.full((32,), 6),
...               torch.zeros(32))
>>> class Stopped(Checkpoint):   # a kill right after the checkpoint of step 4
...     def save(self, trainer, step):
...         super().save(trainer, step)
...         if step == 4:
...             raise KeyboardInterrupt
>>> def run(path, kind=Checkpoint):
...     torch.manual_seed(0)
...     lin, rng = torch.nn.Linear(6, 1), random.Random(0)
...     loss = lambda b: lin(b.input_ids.float() * rng.random()).pow(2).mean()
...     ck = kind(path, [rng], every_s=0)
...     try:
...         train_one(loss, list(lin.named_parameters()), Batcher(enc, 8), TrainConfig(lr=0.01, steps=8, log_every=2),
...                   checkpoint=ck)
...     except KeyboardInterrupt:
...         return None
...     ck.done()
...     return lin.weight.detach().clone(), ck.resumed_from
>>> straight, _ = run(Path(tempfile.mkdtemp()) / "a.pt")
>>> p = Path(tempfile.mkdtemp()) / "b.pt"
>>> run(p, Stopped) is None, p.is_file()            # stopped after step 4: its checkpoint stays
(True, True)
>>> again, start = run(p)
>>> start, torch.equal(again, straight), p.exists()       # steps 5-8 only, the same weights; file removed
(4, True, False)
"""
from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from .group import GroupTrainer

__all__ = ["Checkpoint"]

EVERY_S = 60.0  # seconds between checkpoints: a warm-up of minutes loses at most about this much


class Checkpoint:
    """Checkpoints of one ``train_one`` training at ``path`` (see the module docstring)."""

    def __init__(self, path: Path, rngs: list[random.Random], *, every_s: float | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.path, self.rngs = Path(path), rngs
        self.every_s = EVERY_S if every_s is None else every_s
        self.log = log or (lambda m: None)
        self.resumed_from = 0
        self._last = time.perf_counter()

    def restore(self, trainer: GroupTrainer) -> int:
        """Load the checkpoint, if there is one, into ``trainer`` (its parameters and optimizer) and
        the random states; the step it was taken after (0: none, start from the beginning)."""
        if not self.path.is_file():
            return 0
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - a damaged checkpoint costs its steps, nothing more
            self.log(f"ignoring the unreadable checkpoint {self.path.name} ({type(err).__name__}): starting over")
            return 0
        device, params = trainer.device, _params(trainer)
        if not isinstance(state, dict) or set(state.get("params") or ()) != set(params):
            self.log(f"ignoring the checkpoint {self.path.name} of other parameters: starting over")
            return 0
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(state["params"][name].to(device))
        lrs = [g["lr"] for g in trainer.opt.param_groups]  # on CUDA device tensors the update reads: kept
        trainer.opt.load_state_dict(state["optimizer"])
        for g, lr in zip(trainer.opt.param_groups, lrs):
            g["lr"] = lr  # (the loop sets its value every step)
        for rng, st in zip(self.rngs, state["rngs"]):
            rng.setstate(st)
        torch.set_rng_state(state["torch"])
        if device.type == "cuda" and state.get("cuda") is not None:
            torch.cuda.set_rng_state(state["cuda"], device)
        self.resumed_from = int(state["step"])
        self.log(f"continuing from the checkpoint of step {self.resumed_from} ({self.path.name})")
        return self.resumed_from

    def save(self, trainer: GroupTrainer, step: int) -> None:
        """At a log point: write the state after ``step`` if ``every_s`` have passed since the last."""
        if time.perf_counter() - self._last >= self.every_s and step < trainer.cfg.steps:
            cuda = trainer.device.type == "cuda"
            state = {"step": step, "optimizer": trainer.opt.state_dict(),
                     "params": {n: p.detach().cpu() for n, p in _params(trainer).items()},
                     "rngs": [r.getstate() for r in self.rngs], "torch": torch.get_rng_state(),
                     "cuda": torch.cuda.get_rng_state(trainer.device) if cuda else None}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            torch.save(state, tmp)
            os.replace(tmp, self.path)
            self._last = time.perf_counter()

    def done(self) -> None:
        """The training finished: its checkpoint is of no more use."""
        self.path.unlink(missing_ok=True)


def _params(trainer: GroupTrainer) -> dict[str, torch.nn.Parameter]:
    """The parameters a trainer trains, by member and name."""
    return {f"{i}.{n}": p for i, m in enumerate(trainer.members) for n, p in m.named()}
