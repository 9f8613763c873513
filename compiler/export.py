"""BERT student --> ONNX file (checked with onnxruntime by the tests).

>>> # export_onnx(model, "student.onnx")  -> Path("student.onnx")
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from exprsearch.errors import ExprSearchError

__all__ = ["export_onnx", "onnx_inputs"]


def export_onnx(model: nn.Module, path: str | Path, seq_len: int = 16, opset: int | None = None) -> Path:
    """Export a (classification) student with dynamic batch and sequence axes.

    Inputs ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64; the last only when the
    model has more than one token type -- a student of a RoBERTa or DistilBERT teacher has one),
    output ``logits``.  Uses the TorchScript exporter when this torch has it (fast), else the
    ``torch.export``-based one (needs onnxscript)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ExprSearchError("ONNX export needs the 'onnx' package: pip install 'exprsearch[onnx]'") from None
    path = Path(path)
    model = model.eval()
    vocab = getattr(getattr(model, "config", None), "vocab_size", 100)
    ids = torch.randint(0, vocab, (2, seq_len))
    args: tuple[torch.Tensor, ...] = (ids, torch.ones_like(ids))
    names = onnx_inputs(model)
    if "token_type_ids" in names:
        args += (torch.zeros_like(ids),)
    axes = {0: "batch", 1: "seq"}
    kw: dict[str, Any] = dict(input_names=names, output_names=["logits"],
              dynamic_axes={**{n: axes for n in names}, "logits": {0: "batch"}})
    if opset:
        kw["opset_version"] = opset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, args, str(path), dynamo=False, **kw)
        except (TypeError, RuntimeError, NotImplementedError):
            torch.onnx.export(model, args, str(path), dynamo=True, **kw)
    return path


def onnx_inputs(model: nn.Module) -> list[str]:
    """The inputs of ``model``'s ONNX graph: token types only where it has more than one."""
    types = getattr(getattr(model, "config", None), "type_vocab_size", 2) or 1
    return ["input_ids", "attention_mask"] + (["token_type_ids"] if types > 1 else [])
