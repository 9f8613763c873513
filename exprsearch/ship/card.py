"""a distilled student's facts --> its model card (the README.md of the Hugging Face directory).

Input: the summary ``distill`` builds (spec, per-seed dev scores of the student and of the
standard-FFN student under the same protocol, the teacher's, the kept seed, params, FLOPs,
latency, the command).  Output: Markdown with the Hub's YAML header.  Invariant: every number
in the card is in the summary; scores are mean ± std over seeds with each seed listed.

>>> card = model_card({"task": "SST-2", "spec": "[x]", "main_metric": "acc", "chosen_seed": 0,
...     "student": {"mean": 80.0, "std": 0.0, "seeds": [{"seed": 0, "status": "ok", "dev": {"acc": 0.8},
...                 "heldout": 0.81, "best_step": 50, "steps": 60}]},
...     "standard": None, "teacher": {"acc": 90.0}, "params": 10, "nonembed_params": 4, "ffn_params": 2,
...     "flops_per_token": 1e6, "latency": {"cpu_batch1_ms": 3.0}, "command": "exprsearch distill ...",
...     "protocol": {"epochs": 3}})
>>> "80.00 ± 0.00" in card and "| teacher | 90.00 |" in card
True
"""
from __future__ import annotations

import html
import re
from typing import Any

from exprsearch import __version__

__all__ = ["model_card", "md"]

_MD = re.compile(r"([\\`*_{}\[\]()#+!|~])")  # Markdown's signs


def md(text: Any) -> str:
    r"""``text`` as Markdown text, not markup: HTML's ``< > &`` as entities, Markdown's own signs
    escaped (a task or store named ``<script>...`` or ``*x*`` reads as written).

    >>> print(md("<script>alert(1)</script> *x*"))
    &lt;script&gt;alert\(1\)&lt;/script&gt; \*x\*
    """
    return _MD.sub(r"\\\1", html.escape(str(text), quote=False))


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text``."""
    return "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))


def _score(s: dict[str, Any] | None) -> str:
    if not s or s.get("mean") is None:
        return "-"
    n = sum(x["status"] == "ok" for x in s["seeds"])
    return f"{s['mean']:.2f} ± {s['std']:.2f} ({n} seed{'s' * (n != 1)})"


def model_card(info: dict[str, Any]) -> str:
    """The model card of one distilled task (see the module docstring)."""
    main, task = md(info["main_metric"]), md(info["task"])
    command = info.get("command", "")
    lines = ["---", "library_name: transformers", "pipeline_tag: text-classification",
             "tags: [exprsearch, bert, knowledge-distillation, text-classification]", "---", "",
             f"# ExprBert student for {task}", "",
             "A compact BERT student whose feed-forward networks are searched math expressions (EfficientBERT, "
             f"Findings of EMNLP 2021), distilled from a fine-tuned teacher with exprsearch {__version__}.", "",
             "## Use", "", "```python",
             "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
             "model = AutoModelForSequenceClassification.from_pretrained(PATH, trust_remote_code=True)",
             "tokenizer = AutoTokenizer.from_pretrained(PATH)", "```", "",
             "The architecture is in `modeling_exprbert.py` (generated; needs only torch and transformers); "
             "`model.onnx` takes `input_ids`, `attention_mask` and `token_type_ids`.", "",
             "## Spec", "", *([f"From {md(info['source'])}.", ""] if info.get("source") else []),
             "```", *[f"{item}" for item in info["spec"].strip("[]").split("; ")], "```", "",
             f"## Dev scores ({task}, {main} x 100)", "",
             "| model | dev |", "|---|---|",
             f"| this student | {_score(info['student'])} |",
             f"| standard-FFN student, same protocol | {_score(info.get('standard'))} |",
             f"| teacher | {info['teacher'].get(info['main_metric'], float('nan')):.2f} |", "",
             f"The saved weights are seed {info['chosen_seed']}'s: of the seeds, the best on "
             f"{info.get('protocol', {}).get('heldout_rows', 'the')} held-out training rows (the dev set chooses "
             "nothing).  Per seed:", "", "| seed | dev | held-out | best step / steps |", "|---|---|---|---|"]
    for s in info["student"]["seeds"]:
        dev, held = s["dev"].get(info["main_metric"]), s["heldout"]
        dev_txt = "-" if dev is None else f"{100 * dev:.2f}"
        held_txt = "-" if held is None else f"{100 * held:.2f}"
        lines.append(f"| {s['seed']} | {dev_txt} | {held_txt} | {s['best_step']} / {s['steps']} |")
    lat = info.get("latency", {})
    lines += ["", "## Size and speed", "", "| | |", "|---|---|",
              f"| parameters | {info['params'] / 1e6:.2f}M (non-embedding {info['nonembed_params'] / 1e6:.2f}M, "
              f"FFN {info['ffn_params'] / 1e6:.2f}M) |",
              f"| matmul FLOPs per token | {info['flops_per_token'] / 1e6:.1f}M |"]
    if "cpu_batch1_ms" in lat:
        lines.append(f"| latency, CPU, batch 1 x 128 tokens | {lat['cpu_batch1_ms']:.1f} ms |")
    if "gpu_batch32_ms" in lat:
        lines.append(f"| latency, GPU, batch 32 x 128 tokens (bf16) | {lat['gpu_batch32_ms']:.1f} ms |")
    proto = info.get("protocol", {})
    lines += ["", "## How it was made", "",
              f"A full KD fine-tune from the search's warm supernet: {proto.get('epochs', '?')} epochs, "
              f"the best of evaluations every {proto.get('eval_every', '?')} steps on held-out training rows, "
              f"dropout {proto.get('dropout')}.  Reproduce:", "", _fence(command), command, _fence(command), ""]
    return "\n".join(lines)
