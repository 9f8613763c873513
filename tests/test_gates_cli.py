"""Gated FFNs, the wb3 extension (issue 24), at the edges: the search's gates option reaches its
spaces, the space command counts gated trees, the REPL shows a gated FFN and lists the slots."""
from __future__ import annotations

import io

from exprsearch import Space, count, parse
from exprsearch.cli.main import main
from exprsearch.cli.repl import GEGLU_EXAMPLE, Repl
from exprsearch.kd.protocol import EvalConfig
from exprsearch.lang.validity import gate_of
from exprsearch.search.search import Search, SearchConfig
from exprsearch.search.store import Store


def test_search_spaces_allow_gates_only_when_asked(tmp_path):
    assert SearchConfig().gates is False
    off = Search(Store(tmp_path / "off.db"), SearchConfig(), EvalConfig(layers=2), log=lambda m: None, progress=False)
    on = Search(Store(tmp_path / "on.db"), SearchConfig(gates=True), EvalConfig(layers=2), log=lambda m: None,
                progress=False)
    assert [sp.gates for sp in off.spaces(1)] == [False, False]
    assert [sp.gates for sp in on.spaces(1)] == [True, True]
    assert on.spaces(1)[0].allows(parse(GEGLU_EXAMPLE)) and not off.spaces(1)[0].allows(parse(GEGLU_EXAMPLE))


def test_space_command_counts_gated_trees(capsys):
    args = ["space", "--max-depth", "4", "--max-size", "7", "--unary", "gelu,swish", "--binary", "mul",
            "--blocks", "1", "--ratios", "3", "--samples", "0", "--no-distinct"]
    assert main(args) == 0
    plain = capsys.readouterr().out
    assert main(args + ["--gates"]) == 0
    gated = capsys.readouterr().out
    want = count(Space(max_depth=4, max_size=7, unary=("gelu", "swish"), binary=("mul",), blocks=(1,), ratios=(3,),
                       gates=True))
    assert "valid trees  98 (exact)" in plain and f"valid trees  {want} (exact)" in gated and want == 124


def test_repl_shows_a_gated_ffn_and_lists_the_slots():
    out = io.StringIO()
    Repl(out=out).run_lines([GEGLU_EXAMPLE, ":help"])
    text = out.getvalue()
    assert "canonical  linear1_3(mul(linear1_3(x,wb3),gelu(linear1_3(x,wb1))),wb2)" in text
    assert "valid      yes (strict)" in text
    assert "wb3     weight/bias slot of the gate linear: H -> d" in text and "[extension]" in text
    assert gate_of(parse(GEGLU_EXAMPLE)) is not None
