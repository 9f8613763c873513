"""trained student --> a Hugging Face model directory that loads where exprsearch is not installed.

Input: a student (``compiler.student``: the ``ExprBertForSequenceClassification`` of
``compiler/hf``, with its parsed spec; ``compiler.exits.with_exits`` gives one carrying its exit
heads), the teacher's tokenizer directory and the label names.  Output, written by transformers'
own ``save_pretrained`` (the classes are registered for the auto classes): ``config.json``
(``model_type`` ``exprbert``, an ``auto_map`` for AutoConfig, AutoModel and
AutoModelForSequenceClassification, every layer's FFN and attention), ``model.safetensors``,
``configuration_exprbert.py``, ``modeling_exprbert.py`` and ``exits_exprbert.py`` copied verbatim
from the package, and the tokenizer's files; then ``ffn_exprbert.py``: each layer's FFN written
out as Python from its expression (``compiler.pysource.ffn_module``).  So
``AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)`` and
``pipeline("text-classification", model=DIR, trust_remote_code=True)`` run it.
Invariant: the shipped FFN classes have the lowered FFNs' parameter names and compute what they
compute, so the weights load unchanged and the logits agree (``tests/test_ship_hf.py``).

>>> # write_hf_dir(student, "student/", TOKENIZER_DIR, ["negative", "positive"])  -> Path("student")
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exprsearch.compiler.student import ExprBertForSequenceClassification

__all__ = ["write_hf_dir", "FFN_FILE"]

FFN_FILE = "ffn_exprbert.py"  # the generated part of a shipped directory


def write_hf_dir(model: ExprBertForSequenceClassification, out: Path, tokenizer_dir: Path,
                 labels: list[str] | None = None) -> Path:
    """Save ``model`` into ``out`` (created) as a self-contained Hugging Face directory."""
    from exprsearch.compiler.hf.modeling_exprbert import ExprBertModel
    from exprsearch.compiler.pysource import ffn_module
    from exprsearch.compiler.student import attached_spec, ffn_config
    from exprsearch.kd.teacher import load_tokenizer, offline
    offline()  # no "Writing model shards" bar in the log
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    if labels:
        cfg.id2label = {i: str(n) for i, n in enumerate(labels)}
        cfg.label2id = {str(n): i for i, n in enumerate(labels)}
    # save_pretrained adds AutoConfig and the model's own auto class; the base model is registered too
    cfg.auto_map = {"AutoModel": f"{ExprBertModel.__module__.rsplit('.', 1)[-1]}.{ExprBertModel.__name__}"}
    model.save_pretrained(out)  # config.json, model.safetensors and the package's configuration/modeling files
    (out / FFN_FILE).write_text(ffn_module(attached_spec(model).layers, ffn_config(cfg)), encoding="utf-8")
    load_tokenizer(Path(tokenizer_dir)).save_pretrained(out)  # whatever files the teacher's tokenizer needs
    return out
