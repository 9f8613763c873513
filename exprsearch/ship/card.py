"""a distilled student's facts --> its model card (the README.md of the Hugging Face directory).

Input: the summary ``distill`` builds (spec, per-seed dev scores of the student and of the
width-matched standard-FFN student under the same protocol, the teacher's, the kept seed, params,
FLOPs, latency, the constant-predictor check, the command).  Output: Markdown with the Hub's YAML
metadata -- ``library_name``, ``pipeline_tag``, ``tags``, ``base_model`` (the teacher, where it
has a Hub id), ``datasets`` (GLUE's, for a GLUE task), ``metrics`` and a ``model-index`` with the
dev scores -- a usage snippet, the spec and the scores with their spread.  Invariants: every
number in the card is in the summary; scores are mean ± std over seeds with each seed listed;
every string a user chose (task, labels, file and column names, paths, the command) is shown as
text: Markdown and HTML escaped, YAML quoted, fenced code never closed early (``markdown.py``).

>>> card = model_card({"task": "SST-2", "spec": "[x]", "main_metric": "acc", "chosen_seed": 0,
...     "student": {"mean": 80.0, "std": 0.0, "seeds": [{"seed": 0, "status": "ok", "dev": {"acc": 0.8},
...                 "heldout": 0.81, "best_step": 50, "steps": 60}]},
...     "standard": None, "teacher": {"acc": 90.0}, "params": 10, "nonembed_params": 4, "ffn_params": 2,
...     "flops_per_token": 1e6, "latency": {"cpu_batch1_ms": 3.0}, "command": "exprsearch distill ...",
...     "protocol": {"epochs": 3}, "base_model": "sentence-transformers/all-MiniLM-L6-v2"})
>>> "80.00 ± 0.00" in card and "| teacher | 90.00 |" in card
True
>>> "the search's best is the width-matched standard FFN" in card  # "standard": None: it is the student
True
>>> print(card.split("---")[1].strip())  # doctest: +ELLIPSIS
library_name: transformers
pipeline_tag: text-classification
tags: [exprsearch, bert, knowledge-distillation, text-classification, efficientbert]
base_model: "sentence-transformers/all-MiniLM-L6-v2"
datasets: [glue]
metrics: [accuracy]
model-index:
- name: "exprbert-sst2"
  results:
  - task: {type: text-classification, name: Text Classification}
    dataset: {name: "GLUE SST-2", type: glue, config: sst2, split: validation}
    metrics:
    - {type: accuracy, value: 80.0, name: "dev accuracy, mean of 1 seed (std 0.00)"}
"""
from __future__ import annotations

from typing import Any

from exprsearch import __version__

from .markdown import fence, md, yaml_str
from .trivial import card_lines, headline

__all__ = ["model_card", "md"]

# our metric names -> the Hub's metric ids
_HUB_METRIC = {"acc": "accuracy", "f1": "f1", "mcc": "matthews_correlation", "pearson": "pearsonr",
               "spearman": "spearmanr", "macro_f1": "f1"}


def _front_matter(info: dict[str, Any]) -> list[str]:
    """The Hub's YAML metadata (every user string JSON-quoted: valid YAML)."""
    from exprsearch.rows.glue import is_glue
    from exprsearch.rows.glue import task as glue_task
    name, main = info["task"], info["main_metric"]
    glue = is_glue(name)
    metric = _HUB_METRIC.get(main, main)
    student = info["student"]
    n = sum(s["status"] == "ok" for s in student["seeds"])
    lines = ["---", "library_name: transformers", "pipeline_tag: text-classification",
             "tags: [exprsearch, bert, knowledge-distillation, text-classification, efficientbert]"]
    if info.get("base_model"):
        lines.append(f"base_model: {yaml_str(info['base_model'])}")
    if glue:
        lines.append("datasets: [glue]")
    lines.append(f"metrics: [{metric}]")
    if student.get("mean") is None:
        return lines + ["---"]
    config = glue_task(name).name.lower().replace("-", "") if glue else ""
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)  # a user's name, as plain metadata
    dataset = (f"{{name: {yaml_str('GLUE ' + glue_task(name).name)}, type: glue, config: {config}, split: validation}}"
               if glue else f"{{name: {yaml_str(slug)}, type: {yaml_str(slug)}, split: dev}}")
    model = "exprbert-" + (config if glue else slug)
    what = f"dev {metric}, mean of {n} seed{'s' * (n != 1)} (std {student['std']:.2f})"
    lines += ["model-index:", f"- name: {yaml_str(model)}", "  results:",
              "  - task: {type: text-classification, name: Text Classification}", f"    dataset: {dataset}",
              "    metrics:",
              f"    - {{type: {metric}, value: {round(student['mean'], 2)}, name: {yaml_str(what)}}}",
              "---"]
    return lines


def _score(s: dict[str, Any] | None) -> str:
    if not s or s.get("mean") is None:
        return "-"
    n = sum(x["status"] == "ok" for x in s["seeds"])
    return f"{s['mean']:.2f} ± {s['std']:.2f} ({n} seed{'s' * (n != 1)})"


def _latency(lat: dict[str, Any], key: str) -> str:
    """A latency cell: the median with its spread, and the ratio to the standard-FFN student timed
    alongside (on a loaded machine the ratio holds where milliseconds do not).

    >>> _latency({"cpu_batch1": {"ms": 12.34, "spread_ms": 0.4, "repeats": 7, "ref_ms": 12.6, "rel": 0.98,
    ...                          "rel_spread": 0.02}, "cpu_batch1_ms": 12.34}, "cpu_batch1")
    '12.3 ms ± 0.4 (median of 7); 0.98 ± 0.02 x the standard-FFN student timed alongside (12.6 ms)'
    >>> _latency({"cpu_batch1_ms": 3.0}, "cpu_batch1")
    '3.0 ms'
    """
    d = lat.get(key)
    if not d:
        return f"{lat[key + '_ms']:.1f} ms"
    return (f"{d['ms']:.1f} ms ± {d['spread_ms']:.1f} (median of {d['repeats']}); {d['rel']:.2f} ± "
            f"{d['rel_spread']:.2f} x the standard-FFN student timed alongside ({d['ref_ms']:.1f} ms)")


def _ffn(s: dict[str, Any] | None) -> str:
    return "-" if not s or s.get("ffn_params") is None else f"{s['ffn_params'] / 1e6:.3f}M"


def _named(s: dict[str, Any] | None) -> str:
    return f" (`{s['spec']}`)" if s and s.get("spec") else ""


def model_card(info: dict[str, Any]) -> str:
    """The model card of one distilled task (see the module docstring)."""
    main, task = info["main_metric"], md(info["task"])
    command = info.get("command", "")
    inputs = info.get("onnx_inputs") or ["input_ids", "attention_mask", "token_type_ids"]
    lines = [*_front_matter(info), "",
             f"# ExprBert student for {task}", "",
             "A compact BERT student whose feed-forward networks are searched math expressions (EfficientBERT, "
             f"Findings of EMNLP 2021), distilled from a fine-tuned teacher with exprsearch {__version__}.", "",
             *headline(info.get("check") or {}),  # the student or teacher no better than a constant: said first
             "## Use", "", "```python",
             "from transformers import pipeline",
             "classify = pipeline(\"text-classification\", model=PATH, trust_remote_code=True)",
             "classify(\"a gripping, beautifully shot film\")",
             "",
             "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
             "model = AutoModelForSequenceClassification.from_pretrained(PATH, trust_remote_code=True)",
             "tokenizer = AutoTokenizer.from_pretrained(PATH, trust_remote_code=True)  # no custom-code prompt",
             "```", "",
             "The architecture is in `configuration_exprbert.py` and `modeling_exprbert.py` (exprsearch's own "
             "modules, copied verbatim; they need only torch and transformers) and `ffn_exprbert.py` (each "
             "layer's feed-forward network, written from its expression); `config.json` holds every layer's "
             "expression and shapes.  `model.onnx` takes " + ", ".join(f"`{i}`" for i in inputs) + ".", "",
             "## Spec", "", *([f"From {md(info['source'])}.", ""] if info.get("source") else []),
             "```", *[f"{item}" for item in info["spec"].strip("[]").split("; ")], "```", "",
             f"## Dev scores ({task}, {main} x 100)", "",
             "| model | dev | FFN parameters |", "|---|---|---|",
             f"| this student | {_score(info['student'])} | {_ffn(info['student'])} |",
             *([f"| standard-FFN student{_named(info['standard'])}, same protocol and seeds | "
                f"{_score(info['standard'])} | {_ffn(info['standard'])} |"] if info.get("standard") else
               ["| standard-FFN student | this student: the search's best is the width-matched standard FFN | |"]),
             f"| teacher | {info['teacher'].get(main, float('nan')):.2f} | |", "",
             f"The saved weights are seed {info['chosen_seed']}'s: of the seeds, the best on "
             f"{info.get('protocol', {}).get('heldout_rows', 'the')} held-out training rows (the dev set chooses "
             "nothing).  Per seed:", "", "| seed | dev | held-out | best step / steps |", "|---|---|---|---|"]
    for s in info["student"]["seeds"]:
        dev, held = s["dev"].get(main), s["heldout"]
        dev_txt = "-" if dev is None else f"{100 * dev:.2f}"
        held_txt = "-" if held is None else f"{100 * held:.2f}"
        lines.append(f"| {s['seed']} | {dev_txt} | {held_txt} | {s['best_step']} / {s['steps']} |")
    if info.get("check"):  # rows, the constant predictor, warnings (trivial.py)
        lines += ["", *card_lines(info["check"])]
    lat = info.get("latency", {})
    lines += ["", "## Size and speed", "", "| | |", "|---|---|",
              f"| parameters | {info['params'] / 1e6:.2f}M (non-embedding {info['nonembed_params'] / 1e6:.2f}M, "
              f"FFN {info['ffn_params'] / 1e6:.2f}M) |",
              f"| matmul FLOPs per token | {info['flops_per_token'] / 1e6:.1f}M |"]
    if "cpu_batch1_ms" in lat:
        lines.append(f"| latency, CPU, batch 1 x 128 tokens | {_latency(lat, 'cpu_batch1')} |")
    if "gpu_batch32_ms" in lat:
        lines.append(f"| latency, GPU, batch 32 x 128 tokens (bf16) | {_latency(lat, 'gpu_batch32')} |")
    proto = info.get("protocol", {})
    seeds = proto.get("seeds")
    lines += ["", "## How it was made", "",
              f"A full KD fine-tune from the search's warm supernet: {proto.get('epochs', '?')} epochs, "
              f"the best of evaluations every {proto.get('eval_every', '?')} steps on held-out training rows "
              f"(whole training rows drawn to resemble dev, never trained on -- by the teacher neither), "
              f"dropout {proto.get('dropout')}"
              + (f", training seeds {', '.join(map(str, seeds))} (none a search seed)" if seeds else "")
              + ("" if proto.get("best_before_last") is None else
                 "; every seed's best checkpoint came before its last evaluation" if proto["best_before_last"] else
                 "; **some seed's best checkpoint was its last evaluation: it may not have converged**")
              + ".  Reproduce:", "", fence(command), command, fence(command), ""]
    return "\n".join(lines)
