"""The committed fuzz harness (benchmarks/fuzz_lang.py, issue 31) on a CI budget: nothing but
ExprSearchError escapes, nothing hangs, canonical forms are valid and re-parse, spec files keep
their layers, and no merge fails the independent evaluator.  Long runs: ``--n 100000``."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import fuzz_lang  # noqa: E402

from exprsearch import parse  # noqa: E402


def test_the_oracle_tells_a_saturated_tower_pair_apart_and_an_identity_not():
    oracle = fuzz_lang.Oracle()
    tower = "linear1_4(mul(linear1_4(x,wb1),sigmoid({})),wb2)"
    a, b = (parse(tower.format("square(" * k + "x" + ")" * k)) for k in (12, 13))
    assert oracle.difference(a, b) > 0.01
    same = ("linear1_2(relu(linear1_2(mul(x,add(x,tanh(x))),wb1)),wb2)",
            "linear1_2(relu(linear1_2(add(square(x),mul(x,tanh(x))),wb1)),wb2)")
    assert oracle.difference(*(parse(t) for t in same)) < 1e-25


def test_a_small_fuzz_run_is_clean():
    r = fuzz_lang.run(n=1500, seed=7)
    assert r["inputs"] == 1500 and set(r["by_source"]) == {"sample", "scramble", "near_miss", "tower", "mutant",
                                                          "spec", "chain", "payload"}
    assert r["crashes"] == r["hangs"] == 0, r["examples"]
    assert r["canonical_invalid"] == r["canonical_not_reparsing"] == r["canonical_not_fixpoint"] == 0, r["examples"]
    assert r["spec_layer_mismatch"] == 0 and r["specs_checked"] > 20, r["examples"]
    assert r["false_merges"] == 0, r["examples"]
    assert r["merges_checked"] > 5 and r["identical_checked"] > 20  # the oracle did check merges
    assert 100 < r["rejected"] < 1000 and r["parsed_strict"] > 500  # hostile and valid inputs both
