"""modules --> seconds: timing helpers shared by the CLI, the REPL, the search and benchmarks/bench_ffn.py.

``time_call`` synchronises CUDA around CUDA events (or uses ``perf_counter`` on CPU) and reports
the median of several repeats.  ``paired_latency`` times a student and a reference student back to
back, repeat by repeat, in alternating order: on a shared machine the load moves both alike, so
their ratio holds where single timings do not (identical students on 2 busy cores: 944, 936,
133, 920 and 19 ms).  ``StandardFFN`` is the hand-written BERT FFN block
``LN(x + Dropout(W2 gelu(W1 x)))`` -- the reference the compiled modules are compared with.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from .execute import autocast

__all__ = ["time_call", "StandardFFN", "matmul_bound", "forward_ms", "Latency", "paired_latency"]


class StandardFFN(nn.Module):
    """Hand-written ``LN(x + Dropout(W2 gelu(W1 x)))`` repeated ``blocks`` times."""

    def __init__(self, hidden: int, inner: int, blocks: int = 1, dropout: float = 0.1, eps: float = 1e-12) -> None:
        super().__init__()
        self.w1 = nn.ModuleList(nn.Linear(hidden, inner) for _ in range(blocks))
        self.w2 = nn.ModuleList(nn.Linear(inner, hidden) for _ in range(blocks))
        self.ln = nn.ModuleList(nn.LayerNorm(hidden, eps=eps) for _ in range(blocks))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for w1, w2, ln in zip(self.w1, self.w2, self.ln):
            x = ln(x + self.drop(w2(F.gelu(w1(x)))))
        return x


def time_call(fn: Callable[[], object], device: torch.device | str, warmup: int = 10, iters: int = 50,
              repeats: int = 5, bf16: bool = True) -> float:
    """Median seconds per call of ``fn`` (inference, autocast bf16 on CUDA)."""
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    with torch.no_grad(), autocast(dev, bf16):
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize(dev)
                start.record()
                for _ in range(iters):
                    fn()
                end.record()
                torch.cuda.synchronize(dev)
                times.append(start.elapsed_time(end) / 1e3 / iters)
            else:
                t = time.perf_counter()
                for _ in range(iters):
                    fn()
                times.append((time.perf_counter() - t) / iters)
    return statistics.median(times)


def matmul_bound(shapes: list[tuple[int, int]], x: torch.Tensor) -> Callable[[], object]:
    """A function doing only the FFN's matrix products (``(out, in)`` weight shapes, in order),
    on inputs of the right widths: the floor any implementation of the FFN pays."""
    rows = x.reshape(-1, x.shape[-1]).shape[0]
    ws = [torch.randn(o, i, device=x.device, dtype=x.dtype) for o, i in shapes]
    xs = [torch.randn(rows, i, device=x.device, dtype=x.dtype) for _, i in shapes]
    return lambda: [torch.mm(a, w.T) for a, w in zip(xs, ws)]


def forward_ms(model: PreTrainedModel, device: torch.device | str, batch: int, length: int, *,
               warmup: int | None = None, iters: int | None = None) -> float:
    """Milliseconds of one inference forward of a BERT student on ``batch`` sequences of
    ``length`` random tokens (bf16 autocast on CUDA; fewer repeats on the CPU), median of 3."""
    dev = torch.device(device)
    quick = dev.type != "cuda"
    model.eval()
    length = min(length, model.config.max_position_embeddings)
    vocab = model.config.vocab_size
    ids = torch.randint(min(1000, vocab - 1), vocab, (batch, length), device=dev)
    mask = torch.ones_like(ids)
    return 1e3 * time_call(lambda: model(input_ids=ids, attention_mask=mask), dev,
                           warmup=(1 if quick else 3) if warmup is None else warmup,
                           iters=(2 if quick else 5) if iters is None else iters, repeats=3)


@dataclass(frozen=True)
class Latency:
    """One student's latency, measured beside a reference student in the same process."""

    ms: float                  # median over the repeats of one forward (milliseconds)
    spread_ms: float           # half the range of the repeats: how far one repeat strayed
    repeats: int
    ref_ms: float              # the reference's median, timed alongside
    rel: float                 # median over the repeats of this / the reference (timed back to back)
    rel_spread: float          # half the range of those ratios

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _half_range(xs: list[float]) -> float:
    return (max(xs) - min(xs)) / 2


def paired_latency(model: PreTrainedModel, reference: PreTrainedModel, device: torch.device | str, batch: int,
                   length: int, *, repeats: int = 5, warmup: int | None = None, iters: int | None = None) -> Latency:
    """Latency of ``model`` and of ``reference`` (one inference forward of ``batch`` sequences of
    ``length`` random tokens; bf16 autocast on CUDA) after ``warmup`` forwards each, timed in
    ``repeats`` rounds of ``iters`` forwards each, the order alternating round by round; the
    median and spread of each and of their ratio.

    >>> from transformers import BertConfig, BertForSequenceClassification
    >>> cfg = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
    ...                  intermediate_size=32, max_position_embeddings=32)
    >>> a, b = BertForSequenceClassification(cfg), BertForSequenceClassification(cfg)
    >>> lat = paired_latency(a, b, "cpu", 2, 8)
    >>> lat.repeats, lat.ms > 0, 0.1 < lat.rel < 10, lat.rel_spread >= 0
    (5, True, True, True)
    """
    dev = torch.device(device)
    quick = dev.type != "cuda"
    warmup = (1 if quick else 3) if warmup is None else warmup
    iters = (2 if quick else 3) if iters is None else iters
    length = min(length, model.config.max_position_embeddings, reference.config.max_position_embeddings)
    vocab = min(model.config.vocab_size, reference.config.vocab_size)
    ids = torch.randint(min(1000, vocab - 1), vocab, (batch, length), device=dev)
    mask = torch.ones_like(ids)
    calls = [lambda m=m: m(input_ids=ids, attention_mask=mask) for m in (model, reference)]
    for m in (model, reference):
        m.eval()
    times: list[list[float]] = [[], []]
    for r in range(repeats):
        for k in ((0, 1) if r % 2 == 0 else (1, 0)):
            times[k].append(1e3 * time_call(calls[k], dev, warmup=warmup if r == 0 else 0, iters=iters, repeats=1))
    ratios = [a / b for a, b in zip(*times)]
    return Latency(statistics.median(times[0]), _half_range(times[0]), repeats, statistics.median(times[1]),
                   statistics.median(ratios), _half_range(ratios))
