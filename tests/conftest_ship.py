"""A shipped student loaded as a user without exprsearch loads it: a fresh Python with the package
hidden, offline, only ``transformers`` (``trust_remote_code``), run from ``/``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

_LOAD = r'''
import sys, json, torch
sys.modules["exprsearch"] = None   # not installed, as far as this process knows
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification
path, texts = sys.argv[1], json.loads(sys.argv[2])
model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True).eval()
tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
enc = tok(texts, padding=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**enc).logits
out = {"logits": logits.tolist(), "keys": sorted(enc), "cls": type(model).__name__,
       **{k: v.tolist() for k, v in enc.items()}}
if sys.argv[3] == "bert":   # what a plain BERT class makes of the directory (it reports the FFNs missing)
    _, info = BertForSequenceClassification.from_pretrained(path, output_loading_info=True)
    out["bert_missing"] = sorted(info["missing_keys"])
print("\nRESULT " + json.dumps(out))
'''


def load_without_exprsearch(path: Path, home: Path, texts: list[str], *, as_bert: bool = False) -> dict[str, Any]:
    """Logits, tokenizer outputs and the model class of ``path`` as such a process sees them."""
    proc = subprocess.run([sys.executable, "-c", _LOAD, str(path), json.dumps(texts), "bert" if as_bert else ""],
                          capture_output=True, text=True, cwd="/", timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                               "HF_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
