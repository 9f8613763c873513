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

from typing import Any

from exprsearch import __version__

from .trivial import card_lines, headline

__all__ = ["model_card"]


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
    main, task = info["main_metric"], info["task"]
    lines = ["---", "library_name: transformers", "pipeline_tag: text-classification",
             "tags: [exprsearch, bert, knowledge-distillation, text-classification]", "---", "",
             f"# ExprBert student for {task}", "",
             "A compact BERT student whose feed-forward networks are searched math expressions (EfficientBERT, "
             f"Findings of EMNLP 2021), distilled from a fine-tuned teacher with exprsearch {__version__}.", "",
             *headline(info.get("check") or {}),  # the student or teacher no better than a constant: said first
             "## Use", "", "```python",
             "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
             "model = AutoModelForSequenceClassification.from_pretrained(PATH, trust_remote_code=True)",
             "tokenizer = AutoTokenizer.from_pretrained(PATH, trust_remote_code=True)  # no custom-code prompt",
             "```", "",
             "The architecture is in `modeling_exprbert.py` (generated; needs only torch and transformers); "
             "`model.onnx` takes `input_ids`, `attention_mask` and `token_type_ids`.", "",
             "## Spec", "", *([f"From {info['source']}.", ""] if info.get("source") else []),
             "```", *[f"{item}" for item in info["spec"].strip("[]").split("; ")], "```", "",
             f"## Dev scores ({task}, {main} x 100)", "",
             "| model | dev | FFN parameters |", "|---|---|---|",
             f"| this student | {_score(info['student'])} | {_ffn(info['student'])} |",
             f"| standard-FFN student{_named(info.get('standard'))}, same protocol and seeds | "
             f"{_score(info.get('standard'))} | {_ffn(info.get('standard'))} |",
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
              + ".  Reproduce:", "", "```", info.get("command", ""), "```", ""]
    return "\n".join(lines)
