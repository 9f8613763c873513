"""The command line, run in-process (capsys) and once as the installed console script."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _support import STANDARD_FFN, efficientbert_layers, example_lines

import exprsearch
from exprsearch.cli import main as cli
from exprsearch.lang.canon import canonicalize
from exprsearch.lang.display import ast_tree
from exprsearch.lang.numeric import fingerprint
from exprsearch.lang.ops import linear_op
from exprsearch.lang.parsing import parse
from exprsearch.space.generate import Space, count, enumerate_space


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


# -- parse -------------------------------------------------------------------------------------

def test_parse_human(capsys):
    text = "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"
    rc, out, err = run(capsys, "parse", text)
    assert rc == 0 and err == ""
    e = parse(text)
    c = canonicalize(e)
    assert f"expression   {text}" in out
    assert "valid        yes (strict rules)" in out
    assert f"canonical    {c}" in out
    assert (e.size, e.depth) == (6, 4)
    assert "size/depth   6 nodes / depth 4   output width H" in out
    assert "dag          7 distinct nodes, 1 shared, ops linear1_2, mul, relu" in out
    assert "linears      linear1_2: X=1 block(s), d=D/2" in out
    assert f"fingerprint  {fingerprint(c)}" in out
    assert out.rstrip().endswith(ast_tree(e))


def test_parse_json(capsys):
    rc, out, _ = run(capsys, "parse", "--json", STANDARD_FFN)
    assert rc == 0
    info = json.loads(out)
    assert info["expression"] == info["canonical"] == STANDARD_FFN
    assert (info["size"], info["depth"], info["width"], info["valid"]) == (4, 3, "H", "strict")
    assert info["dag"] == {"nodes": 6, "edges": 5, "depth": 3, "shared": 0, "ops": ["gelu", "linear1_1"]}
    assert info["fingerprint"] == fingerprint(parse(STANDARD_FFN))


def test_parse_relaxed(capsys):
    two_branches = "linear1_1(add(linear1_1(x,wb1),linear1_1(tanh(x),wb1)),wb2)"
    rc, _, err = run(capsys, "parse", two_branches)
    assert rc == 2 and "error: a valid FFN uses exactly one wb1 linear" in err and "--relaxed" in err
    rc, out, _ = run(capsys, "parse", "--relaxed", "--json", two_branches)
    assert rc == 0 and json.loads(out)["valid"] == "relaxed"


def test_parse_error_is_one_message_with_a_caret(capsys):
    rc, out, err = run(capsys, "parse", "linear1_2(relu(relu(linear1_2(x,wb1))),wb2)")
    assert rc == 2 and out == ""
    lines = err.splitlines()
    assert lines[0] == "error: relu directly inside relu: activations may not nest"
    assert lines[1] == "  at line 1, column 16:"
    assert lines[3] == "    " + " " * 15 + "^" * len("relu(linear1_2(x,wb1))")


# -- canon -------------------------------------------------------------------------------------

def test_canon_bundled_examples(capsys):
    rc, out, err = run(capsys, "canon")
    assert rc == 0
    assert "no input given: canonicalising the bundled examples" in err
    assert "10 expressions, 7 distinct candidates, 3 duplicates (identical canonical form 2, sympy 1, " \
           "numeric 0), 0 fingerprint collisions, 0 invalid" in out
    assert "dedup groups:" in out
    groups = out.split("dedup groups:")[1]
    assert "linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)\n    #2 examples.ffn:3, #3 examples.ffn:4" in groups
    assert "#7 examples.ffn:8, #8 examples.ffn:9" in groups
    assert out.count("examples.ffn:") >= len(example_lines())


def test_canon_json(capsys):
    rc, out, _ = run(capsys, "canon", "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["summary"].pop("sympy_seconds") >= 0  # sympy's time, reported
    assert data["summary"] == {"expressions": 10, "classes": 7, "invalid": 0, "duplicates": 3,
                               "proofs": {"new": 7, "identical": 2, "sympy": 1, "numeric": 0},
                               "collisions": 0}
    assert [it["input"] for it in data["items"]] == list(example_lines())
    assert sum(len(v) for v in data["groups"].values()) == 6 and data["errors"] == []
    for it in data["items"]:
        assert it["canonical"] == str(canonicalize(parse(it["input"])))


def test_canon_file_with_a_bad_line(capsys, tmp_path: Path):
    f = tmp_path / "mine.ffn"
    f.write_text(f"{STANDARD_FFN}\n# a comment\n\n"
                 "linear1_2(relu(relu(linear1_2(x,wb1))),wb2)\n"
                 "linear1_1(gleu(linear1_1(x,wb1)),wb2)\n"
                 "linear1_1(gelu(linear1_1(x,wb1)),wb2)\n", encoding="utf-8")
    rc, out, err = run(capsys, "canon", str(f))
    assert rc == 2
    assert "error: relu directly inside relu" in err
    assert "at mine.ffn:4:16:" in err
    assert "at mine.ffn:5:11:" in err and "did you mean 'gelu'?" in err
    lines = err.splitlines()
    i = lines.index("  at mine.ffn:4:16:")
    assert lines[i + 1] == "    linear1_2(relu(relu(linear1_2(x,wb1))),wb2)"
    assert lines[i + 2] == "    " + " " * 15 + "^" * 22
    # the good lines are still processed
    assert "mine.ffn:1" in out and "mine.ffn:6" in out and "= #1 (identical)" in out
    assert "2 invalid" in out


def test_canon_expressions_as_arguments_and_stdin(capsys, monkeypatch):
    rc, out, _ = run(capsys, "canon", "--json", "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)",
                     "linear1_2(relu(mul(x,linear1_2(x,wb1))),wb2)", "bad(")
    assert rc == 2
    data = json.loads(out)
    assert data["summary"]["classes"] == 1 and data["summary"]["invalid"] == 1
    assert data["errors"][0].startswith("arg: unknown name 'bad'")
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{STANDARD_FFN}\n{STANDARD_FFN}\n"))
    rc, out, _ = run(capsys, "canon", "--json", "-")
    assert rc == 0
    data = json.loads(out)
    assert [it["source"] for it in data["items"]] == ["<stdin>:1", "<stdin>:2"]
    assert data["summary"]["duplicates"] == 1


def test_long_inline_specs_are_text_not_file_names(capsys):
    """A six-layer spec is longer than a file name may be: asking the file system about it raised
    'File name too long' (issue 23); it is text, for canon as for eval and exits."""
    from exprsearch.cli.common import as_file, read_spec_arg, spec_text
    spec = "[" + "; ".join(efficientbert_layers()) + "]"
    assert 255 < len(spec) < 4096
    assert as_file(spec) is None and spec_text(spec) == spec
    assert len(read_spec_arg(spec)) == 6
    rc, _, err = run(capsys, "canon", spec)
    assert rc == 2 and "expected one expression, got a model spec of 6 layers" in err
    inner = "x"
    for _ in range(40):
        inner = f"add(x,tanh({inner}))"
    long_expr = f"linear1_1(gelu(linear1_1({inner},wb1)),wb2)"
    assert len(long_expr) > 255
    rc, out, err = run(capsys, "canon", long_expr)
    assert rc == 0 and "1 distinct candidates" in out


# -- space -------------------------------------------------------------------------------------

def test_space_human_counts(capsys):
    rc, out, _ = run(capsys, "space", "--max-depth", "4", "--max-size", "5", "--samples", "3")
    assert rc == 0
    n = count(Space(max_depth=4, max_size=5))
    assert n == 2848
    assert f"valid trees  {n:,} (exact)" in out
    assert "distinct     2,784 canonical candidates (1.02 trees per candidate)" in out
    samples = out.split("samples (uniform over trees):\n")[1].splitlines()
    assert len(samples) == 3


def test_space_json(capsys):
    rc, out, _ = run(capsys, "space", "--json", "--max-depth", "4", "--max-size", "5", "--seed", "3")
    assert rc == 0
    data = json.loads(out)
    sp = Space(max_depth=4, max_size=5)
    assert data["trees"] == count(sp)
    assert data["space"]["max_depth"] == 4 and data["space"]["unary"] == list(sp.unary)
    assert len(data["samples"]) == 5
    for s in data["samples"]:
        e = parse(s)
        assert sp.allows(e)
    per = {int(k): v for k, v in data["per_ratio_per_X"].items()}
    assert sorted(per) == [1, 2, 3, 4]
    assert data["distinct"] == 4 * sum(per.values()) <= data["trees"]
    # sandwich each per-ratio count: at least the distinct fingerprints, at most the canonical keys
    for y, n in per.items():
        trees = list(enumerate_space(sp, xy=[linear_op(1, y)]))
        keys = {str(canonicalize(e)) for e in trees}
        prints = {fingerprint(canonicalize(e)) for e in trees}
        assert len(prints) <= n <= len(keys)


def test_space_options_and_bad_config(capsys):
    rc, out, _ = run(capsys, "space", "--json", "--max-depth", "3", "--max-size", "4", "--unary", "gelu",
                     "--binary", "", "--blocks", "1", "--ratios", "1", "--no-distinct", "--samples", "0")
    assert rc == 0
    data = json.loads(out)
    assert data["trees"] == 4 and data["samples"] == [] and "distinct" not in data
    rc, out, err = run(capsys, "space", "--max-depth", "2")
    assert rc == 2 and err.startswith("error: ") and "depth 3" in err
    rc, _, err = run(capsys, "space", "--unary", "add")
    assert rc == 2 and "'add' is not a unary operator" in err


# -- argument errors, help, internal errors ----------------------------------------------------

@pytest.mark.parametrize("argv", [["parse", "--bogus", STANDARD_FFN], ["--bogus"], ["nosuchcmd"],
                                  ["space", "--max-depth", "four"], ["parse"]])
def test_bad_options_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    rc, out, _ = run(capsys)
    assert rc == 2 and "parse" in out and "canon" in out and "space" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"exprsearch {exprsearch.__version__}"


def test_internal_error_is_one_line_unless_debug(capsys, monkeypatch):
    def boom(ns):
        raise RuntimeError("kaput")
    help_, options, _ = cli.COMMANDS["parse"]
    monkeypatch.setitem(cli.COMMANDS, "parse", (help_, options, boom))
    rc, out, err = run(capsys, "parse", STANDARD_FFN)
    assert rc == 1 and "internal error: RuntimeError: kaput" in err and "--debug" in err
    with pytest.raises(RuntimeError, match="kaput"):
        cli.main(["--debug", "parse", STANDARD_FFN])


def test_console_script_did_you_mean():
    script = Path(sys.executable).parent / "exprsearch"
    if not script.exists():
        pytest.skip(f"console script not installed at {script}")
    env = {**os.environ, "EXPRSEARCH_VERIFY": "1"}
    proc = subprocess.run([str(script), "parse", "gleu(x)"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 2
    assert "did you mean 'gelu'?" in proc.stderr
    assert "unknown name 'gleu'" in proc.stderr and "^^^^" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stdout == ""
