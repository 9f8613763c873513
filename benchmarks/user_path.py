"""The new user's path on their own data (issue 33): JSONL with string labels -> search --preset
quick -> distill the run -> report, timed, with the rows used and the score beside the majority class.

The data: MRPC's training and dev files rewritten as JSONL with string labels ("paraphrase",
"different") and other column names -- a file exprsearch has never been told about.  Each step is
the command a user types (no option they would not know); the JSON keeps each step's wall time,
exit code, the lines that say how many rows were used, the leaderboard's head, the distilled
student's dev score beside the teacher's and the constant predictor's, and the card's warnings.

    PYTHONPATH=. python benchmarks/user_path.py --glue GLUE [--out results/user_path.json]
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Log, write_json

OUT = Path(__file__).parent / "results" / "user_path.json"


def to_jsonl(tsv: Path, out: Path) -> int:
    """MRPC's TSV as JSONL: {"first": ..., "second": ..., "verdict": "paraphrase" | "different"}."""
    n = 0
    with open(tsv, encoding="utf-8-sig") as f, open(out, "w", encoding="utf-8") as g:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            g.write(json.dumps({"first": row["#1 String"], "second": row["#2 String"],
                                "verdict": "paraphrase" if row["Quality"] == "1" else "different"}) + "\n")
            n += 1
    return n


def step(log: Log, name: str, cmd: list[str], cwd: Path) -> tuple[dict, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    r = {"command": "exprsearch " + " ".join(cmd[3:]), "seconds": time.perf_counter() - t0, "exit_code": proc.returncode,
         "stdout_tail": proc.stdout.splitlines()[-30:], "stderr_tail": proc.stderr.splitlines()[-15:],
         "rows": [x for x in proc.stderr.splitlines() if re.search(r"rows|examples", x)][:8]}
    log(f"{name}: exit {proc.returncode} in {r['seconds']:.0f}s")
    return r, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--glue", required=True, help="a GLUE folder with MRPC/train.tsv and dev.tsv")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    log = Log()
    work = Path(tempfile.mkdtemp(prefix="user-path-"))
    try:
        rows = {s: to_jsonl(Path(args.glue) / "MRPC" / f"{s}.tsv", work / f"pairs_{s}.jsonl") for s in ("train", "dev")}
        es = [sys.executable, "-m", "exprsearch"]
        data = ["--train", "pairs_train.jsonl", "--dev", "pairs_dev.jsonl", "--text-columns", "first,second",
                "--label-column", "verdict"]
        env_cache = ["--cache-dir", str(work / "cache")]
        result: dict = {"benchmark": "user_path", "device": "cpu", "rows": rows, "steps": {}, "log": log.lines}
        result["steps"]["search"], _ = step(log, "search", es + ["search", "--preset", "quick", *data, *env_cache], work)
        write_json(args.out, result)
        result["steps"]["distill"], distilled = step(log, "distill", es + ["distill", "last", "-o", "student", *env_cache,
                                                                           "--json"], work)
        result["steps"]["distill"]["stdout_tail"] = []  # the JSON is read below
        write_json(args.out, result)
        result["steps"]["report"], _ = step(log, "report", es + ["report", "last", "-o", "report.html"], work)
        card = work / "student" / "README.md"
        if card.is_file():
            text = card.read_text(encoding="utf-8")
            result["card_warnings"] = [x for x in text.splitlines() if x.startswith("**Warning")]
            result["card_data_line"] = next((x for x in text.splitlines() if "training rows" in x), None)
        try:
            info = json.loads(distilled)[0]
            result["distilled"] = {"student_mean": info["student"]["mean"], "student_std": info["student"]["std"],
                                   "standard_mean": (info.get("standard") or {}).get("mean"),
                                   "teacher": info["teacher"], "check": info.get("check")}
        except (ValueError, KeyError, IndexError):
            pass
        result["total_seconds"] = sum(s["seconds"] for s in result["steps"].values())
        write_json(args.out, result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
