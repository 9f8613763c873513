"""lowered FFNs --> fast execution: a per-process module cache, optional torch.compile, autocast.

Input: an expression, an ``FFNConfig`` and a device.  Output: a module ready to run.  Invariants:
each (canonical expression, shapes) is lowered and verified once per process -- later requests
reuse the verified graph with fresh parameters; ``torch.compile`` (opt-in) keeps its artefacts in
a persistent on-disk cache so a second process does not pay the compile again.

>>> import exprsearch as es
>>> from .lower import FFNConfig
>>> cache = ModuleCache()
>>> a = cache.get(es.parse("linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"), FFNConfig(hidden=16))
>>> b = cache.get(es.parse("linear1_2(relu(mul(x,linear1_2(x,wb1))),wb2)"), FFNConfig(hidden=16))
>>> a.code == b.code, a is b, cache.hits, cache.misses
(True, False, 1, 1)
"""
from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path
from typing import Any, Iterator, TypeVar, cast

import torch
from torch import fx, nn

from exprsearch.lang.canon import canonicalize
from exprsearch.lang.expr import Expr

from .lower import FFNConfig, lower

__all__ = ["ModuleCache", "maybe_compile", "autocast", "default_cache_dir", "to_device"]


def default_cache_dir() -> Path:
    """``$EXPRSEARCH_CACHE`` or ``~/.cache/exprsearch``."""
    return Path(os.environ.get("EXPRSEARCH_CACHE", Path.home() / ".cache" / "exprsearch"))


class ModuleCache:
    """Canonical expression + FFN shapes -> the lowered, verified graph (compiled once)."""

    def __init__(self) -> None:
        self._graphs: dict[tuple, fx.GraphModule] = {}
        self.hits = self.misses = 0

    def get(self, e: Expr, cfg: FFNConfig) -> fx.GraphModule:
        """A new FFN module (fresh parameters) for ``e``; lowering is done once per key."""
        key = (str(canonicalize(e)), cfg)
        proto = self._graphs.get(key)
        if proto is None:
            self.misses += 1
            proto = self._graphs[key] = lower(canonicalize(e), cfg)
        else:
            self.hits += 1
        gm = fx.GraphModule(lower_params_like(proto), copy.deepcopy(proto.graph), class_name=type(proto).__name__)
        gm.meta.update(proto.meta)
        return gm


def lower_params_like(proto: fx.GraphModule) -> nn.Module:
    """A root module with the same submodule tree as ``proto`` and re-initialised parameters."""
    root = copy.deepcopy(proto)
    for m in root.modules():
        if isinstance(m, nn.LayerNorm):
            m.reset_parameters()
        elif isinstance(getattr(m, "weight", None), nn.Parameter) and hasattr(m, "bias"):
            weight, bias = getattr(m, "weight"), getattr(m, "bias")
            nn.init.kaiming_uniform_(weight, a=5 ** 0.5)  # nn.Linear's default initialisation
            fan_in = weight.shape[1]
            nn.init.uniform_(bias, -1 / fan_in ** 0.5, 1 / fan_in ** 0.5)
    return root


def maybe_compile(module: nn.Module, enabled: bool, cache_dir: Path | None = None) -> nn.Module:
    """``torch.compile`` the module if asked, with inductor's FX graph cache on disk."""
    if not enabled:
        return module
    d = (cache_dir or default_cache_dir()) / "inductor"
    d.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(d))
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    return cast(nn.Module, torch.compile(module))  # a module's OptimizedModule


M = TypeVar("M", bound=nn.Module)


def to_device(model: M, device: torch.device | str) -> M:
    """``model.to(device)``, typed as ``model``: transformers wraps ``PreTrainedModel.to`` with
    ``functools.wraps``, which type checkers read as an unbound function."""
    moved: Any = model
    return moved.to(device)


@contextlib.contextmanager
def autocast(device: torch.device | str, enabled: bool = True) -> Iterator[None]:
    """bf16 autocast on CUDA (a no-op elsewhere or when disabled)."""
    dev = torch.device(device)
    if enabled and dev.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield
