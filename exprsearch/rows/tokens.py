"""examples --> token tensors, cached on disk; tensors --> length-bucketed batches on the device.

Input: ``Examples`` and a HF tokenizer.  Output: ``Encoded`` (padded ids, segment ids, lengths,
labels) cached under ``<cache>/tokens/<key>.pt`` where the key hashes the tokenizer, the max
length, the file's SHA-256 and the row limit -- so a task is tokenised once per machine.
``Batcher`` keeps the whole split on the device and yields batches whose rows have similar
lengths, padded only to the batch's longest row (rounded up to 8): most GLUE sentences are far
shorter than 128 tokens, so this removes most of the padding work.

>>> import torch
>>> enc = Encoded(torch.tensor([[5, 6, 0], [7, 0, 0]]), torch.zeros(2, 3, dtype=torch.long),
...               torch.tensor([2, 1]), torch.tensor([1.0, 0.0]))
>>> [b.input_ids.shape[1] for b in Batcher(enc, batch_size=2, seed=0, pad_to=1).epoch(0)]
[2]
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Protocol, TypeVar

import torch

from .glue import Examples, file_digest

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

__all__ = ["Encoded", "Batch", "Batcher", "Batches", "encode", "tokenizer_digest"]


@dataclass
class Encoded:
    """A tokenised split, right-padded with 0."""

    input_ids: torch.Tensor       # (N, Lmax) int
    token_type_ids: torch.Tensor  # (N, Lmax) int
    lengths: torch.Tensor         # (N,) int
    labels: torch.Tensor          # (N,) float (class id or regression target)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device | str) -> "Encoded":
        return Encoded(*(t.to(device) for t in (self.input_ids, self.token_type_ids, self.lengths, self.labels)))

    def subset(self, n: int) -> "Encoded":
        return Encoded(self.input_ids[:n], self.token_type_ids[:n], self.lengths[:n], self.labels[:n])

    def take(self, index: torch.Tensor) -> "Encoded":
        """The rows ``index`` (a 1-D index tensor), in that order."""
        return Encoded(*(t.index_select(0, index.to(t.device)) for t in
                         (self.input_ids, self.token_type_ids, self.lengths, self.labels)))


@dataclass
class Batch:
    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor  # rows of the split

    def model_inputs(self, eager: bool = False) -> dict[str, torch.Tensor]:
        """Model inputs with a ready 4-D attention mask: HF then uses it as is, instead of testing
        ``mask.all()`` on every forward -- a host sync that would stall the GPU queue each step.
        ``eager``: an additive float mask (eager attention); else boolean (SDPA)."""
        keep = self.attention_mask[:, None, None, :].bool()
        mask = keep if not eager else (~keep).float() * torch.finfo(torch.float32).min
        return {"input_ids": self.input_ids, "token_type_ids": self.token_type_ids, "attention_mask": mask}

    def inputs_for(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """This batch as ``model``'s inputs (a HF model, or a wrapper holding one as ``student``):
        the mask its attention implementation wants, and token types only where its config has a
        type vocabulary (a DistilBERT teacher takes none)."""
        config = getattr(getattr(model, "student", model), "config", None)
        out = self.model_inputs(getattr(config, "_attn_implementation", "sdpa") == "eager")
        if getattr(config, "type_vocab_size", None) is None:
            del out["token_type_ids"]
        return out


def tokenizer_digest(tok: PreTrainedTokenizerBase) -> str:
    """Identity of a tokenizer's behaviour (its serialised fast tokenizer, or vocab + class)."""
    h = hashlib.sha256(type(tok).__name__.encode())
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:  # minus truncation/padding: the tokenizer's call state, set per call
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        h.update(json.dumps(state, sort_keys=True).encode())
    else:
        h.update(repr(sorted(tok.get_vocab().items())).encode())
    h.update(repr(getattr(tok, "do_lower_case", None)).encode())
    return h.hexdigest()[:16]


def encode(ex: Examples, tok: PreTrainedTokenizerBase, max_len: int, cache_dir: Path | None = None) -> Encoded:
    """Tokenise (pairs as ``[CLS] a [SEP] b [SEP]``), truncating to ``max_len``; cached on disk."""
    key = hashlib.sha256(repr((tokenizer_digest(tok), max_len, file_digest(ex.path), len(ex),
                               ex.skipped) + tuple(map(str, ex.task.identity()))
                              + ((ex.part,) if ex.part else ())).encode()).hexdigest()[:24]
    path = cache_dir / "tokens" / f"{ex.task.name}-{ex.path.stem}-{key}.pt" if cache_dir else None
    if path is not None and path.is_file():
        try:
            return Encoded(**torch.load(path, weights_only=True))
        except Exception:  # noqa: BLE001 - a torn cache file is rebuilt, never trusted
            path.unlink(missing_ok=True)
    cols = list(zip(*ex.texts))
    out = tok(*cols[:2], truncation=True, max_length=max_len, padding=False, return_token_type_ids=True)
    lengths = torch.tensor([len(x) for x in out["input_ids"]], dtype=torch.int32)
    lmax = int(lengths.max())
    ids = torch.zeros(len(ex), lmax, dtype=torch.int32)
    types = torch.zeros(len(ex), lmax, dtype=torch.int8)
    for i, (a, t) in enumerate(zip(out["input_ids"], out["token_type_ids"])):
        ids[i, :len(a)] = torch.tensor(a, dtype=torch.int32)
        types[i, :len(t)] = torch.tensor(t, dtype=torch.int8)
    if "token_type_ids" not in getattr(tok, "model_input_names", ["token_type_ids"]):
        types.zero_()  # a tokenizer of a teacher without token types (RoBERTa, DistilBERT): one segment id
    enc = Encoded(ids, types, lengths, torch.tensor(ex.labels, dtype=torch.float32))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(enc.__dict__, tmp)
        os.replace(tmp, path)  # atomic: readers never see a half-written file
    return enc


B_co = TypeVar("B_co", covariant=True)


class Batches(Protocol[B_co]):
    """Where a training loop's batches come from: a ``Batcher`` (``Batch``es), or any endless
    source of what its loss takes (stage 3's multi-task stream yields (task, ``Batch``) pairs)."""

    def forever(self) -> Iterator[B_co]: ...


class Batcher:
    """Length-bucketed batches of a split held on ``device``.

    Each epoch: shuffle (seeded), cut into chunks of ``bucket`` batches, sort each chunk by length,
    split into batches, shuffle the batch order.  ``pad_to`` rounds the padded length up.
    Static shapes (for CUDA graphs): ``widths`` pads every batch to the smallest of a few widths
    that holds it, and ``fill`` tops a short batch up with rows of the same epoch, so every
    training batch has exactly ``batch_size`` rows and one of ``len(widths)`` shapes.

    >>> enc = Encoded(torch.tensor([[5, 6, 7, 0], [7, 0, 0, 0], [8, 9, 0, 0]]), torch.zeros(3, 4, dtype=torch.long),
    ...               torch.tensor([3, 1, 2]), torch.tensor([1.0, 0.0, 1.0]))
    >>> [tuple(b.input_ids.shape) for b in Batcher(enc, 2, widths=(2, 4), fill=True).epoch(0)]
    [(2, 4), (2, 2)]
    """

    def __init__(self, enc: Encoded, batch_size: int, seed: int = 0, device: torch.device | str = "cpu",
                 shuffle: bool = True, bucket: int = 50, pad_to: int = 8, widths: tuple[int, ...] = (),
                 fill: bool = False) -> None:
        self.enc = enc.to(device)
        self.bs, self.seed, self.shuffle, self.bucket, self.pad_to = batch_size, seed, shuffle, bucket, pad_to
        self.lengths = enc.lengths.tolist()
        lmax = enc.input_ids.shape[1]
        self.widths = tuple(sorted({min(w, lmax) for w in widths} | ({lmax} if widths else set())))
        self.fill = fill

    def width(self, longest: int) -> int:
        """The padded width of a batch whose longest row has ``longest`` tokens."""
        if self.widths:
            return next(w for w in self.widths if w >= longest)
        return min(self.enc.input_ids.shape[1], -(-longest // self.pad_to) * self.pad_to)

    def __len__(self) -> int:
        return (len(self.enc) + self.bs - 1) // self.bs

    def order(self, epoch: int) -> list[list[int]]:
        idx = list(range(len(self.enc)))
        if not self.shuffle:  # evaluation: sort by length for least padding, keep all rows
            idx.sort(key=lambda i: self.lengths[i])
            return [idx[i:i + self.bs] for i in range(0, len(idx), self.bs)]
        rng = random.Random(self.seed * 1_000_003 + epoch)
        rng.shuffle(idx)
        chunk = self.bs * self.bucket
        batches = []
        for c in range(0, len(idx), chunk):
            part = sorted(idx[c:c + chunk], key=lambda i: self.lengths[i])
            batches += [part[i:i + self.bs] for i in range(0, len(part), self.bs)]
        if self.fill and batches and len(batches[-1]) < self.bs:  # top up from the epoch's other rows
            short, taken = batches[-1], set(batches[-1])
            rest = [i for i in idx if i not in taken] or idx
            short += [rest[j % len(rest)] for j in range(self.bs - len(short))]
        rng.shuffle(batches)
        return batches

    def make(self, rows: list[int], index: torch.Tensor | None = None) -> Batch:
        e = self.enc
        width = self.width(max(self.lengths[i] for i in rows))
        if index is None:
            index = torch.tensor(rows).to(e.input_ids.device)
        ids = e.input_ids.index_select(0, index)[:, :width].long()
        return Batch(ids, e.token_type_ids.index_select(0, index)[:, :width].long(), (ids != 0).long(),
                     e.labels.index_select(0, index), index)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        order = self.order(epoch)
        # one host -> device copy per epoch (pinned, asynchronous), then device-side slices
        flat = torch.tensor([i for rows in order for i in rows])
        dev = self.enc.input_ids.device
        flat = flat.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else flat
        start = 0
        for rows in order:
            yield self.make(rows, flat[start:start + len(rows)])
            start += len(rows)

    def forever(self, start_epoch: int = 0) -> Iterator[Batch]:
        e = start_epoch
        while True:
            yield from self.epoch(e)
            e += 1
