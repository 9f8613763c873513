"""``exprsearch compile``: generated code, cost table, JSON, bench, and errors."""
from __future__ import annotations

import json
import re

import pytest

import exprsearch as es
from exprsearch.compiler import FFNConfig, ffn_cost
from exprsearch.cli.main import main

EXPR = "linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)"
STANDARD = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"


def test_code_and_cost(capsys):
    assert main(["compile", EXPR, "--hidden", "32", "--code", "--cost"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"expression  {EXPR}   (H = 32, D = 32)")
    assert "def forward(self, x):" in out and "linear" in out
    assert "torch.maximum(" in out and "torch.tanh(" in out
    cost = ffn_cost(es.parse(EXPR), FFNConfig(hidden=32))
    std = ffn_cost(es.parse(STANDARD), FFNConfig(hidden=32))
    assert "this FFN" in out and "standard FFN (D)" in out
    row = next(line for line in out.splitlines() if line.startswith("params "))
    assert row.split()[1:] == [f"{cost.params:,}", f"{std.params:,}"]
    row = next(line for line in out.splitlines() if line.startswith("mm_flops_per_token"))
    assert row.split()[1:] == [f"{cost.mm_flops_per_token:,.0f}", f"{std.mm_flops_per_token:,.0f}"]
    for key in ("ew_flops_per_token", "flops_per_token", "act_bytes_per_token"):
        assert re.search(rf"^{key}\s", out, re.M), key


def test_cost_table_is_the_default(capsys):
    assert main(["compile", EXPR, "--hidden", "32"]) == 0
    out = capsys.readouterr().out
    assert "this FFN" in out and "def forward" not in out


def test_json(capsys):
    assert main(["compile", EXPR, "--hidden", "32", "--base-width", "64", "--code", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    cfg = FFNConfig(hidden=32, base_width=64)
    assert data["expression"] == EXPR and data["hidden"] == 32 and data["base_width"] == 64
    assert data["cost"] == ffn_cost(es.parse(EXPR), cfg).as_dict()
    assert data["cost"]["params"] == ffn_cost(es.parse(EXPR), cfg).params
    assert data["standard_ffn_cost"]["params"] == ffn_cost(es.parse(STANDARD), cfg).params
    assert "def forward" in data["code"]
    assert "bench" not in data


def test_bench_on_cpu(capsys):
    argv = ["compile", EXPR, "--hidden", "32", "--bench", "--device", "cpu", "--batch", "2", "--seq-len", "4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    m = re.search(r"bench \(cpu, B2xL4\): ([\d.]+) ms vs hand-written standard FFN ([\d.]+) ms \(([\d.]+)x\)", out)
    assert m, out
    assert float(m.group(3)) > 0
    assert main(argv + ["--json"]) == 0
    bench = json.loads(capsys.readouterr().out)["bench"]
    assert bench["device"] == "cpu"
    assert bench["ratio"] == pytest.approx(bench["seconds"] / bench["standard_seconds"])


def test_bad_expression_exits_2_with_caret(capsys):
    bad = "linear1_2(relu(relu(linear1_2(x,wb1))),wb2)"
    assert main(["compile", bad, "--hidden", "32"]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err.startswith("error: relu directly inside relu")
    lines = cap.err.splitlines()
    src = next(i for i, line in enumerate(lines) if line.strip() == bad)
    caret = lines[src + 1]
    assert set(caret.strip()) == {"^"}
    assert caret.index("^") == lines[src].index("relu(linear1_2")  # points at the inner relu


def test_relaxed_flag(capsys):
    two = "linear1_1(add(linear1_1(x,wb1),linear1_1(tanh(x),wb1)),wb2)"
    assert main(["compile", two, "--hidden", "16"]) == 2
    assert "^" in capsys.readouterr().err
    assert main(["compile", two, "--hidden", "16", "--relaxed", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cost"]["params"] == ffn_cost(es.parse(two, strict=False), FFNConfig(hidden=16)).params
