"""grammar/ffn.lark and exprsearch.lang.ops.OPS list exactly the same operator names per kind."""
from __future__ import annotations

import re

import pytest
from _support import ROOT

from exprsearch.lang import syntax
from exprsearch.lang.ops import OPS, Kind

TERMINAL_KIND = {"UNARY_OP": Kind.UNARY, "BINARY_OP": Kind.BINARY, "LINEAR_OP": Kind.LINEAR,
                 "VAR": Kind.VAR, "SLOT": Kind.SLOT, "ATTN_OP": Kind.ATTN}


def terminal_strings(text: str) -> dict[str, list[str]]:
    """Quoted strings of each terminal definition ``NAME: "a" | "b" ...`` (continuation lines
    start with whitespace); comments are stripped first."""
    text = re.sub(r"//[^\n]*", "", text)
    out: dict[str, list[str]] = {}
    for m in re.finditer(r"^([A-Z][A-Z_0-9]*)(?:\.\d+)?\s*:(.*?)(?=^\S|\Z)", text, re.M | re.S):
        out[m.group(1)] = re.findall(r'"([^"]*)"', m.group(2))
    return out


@pytest.fixture(scope="module")
def grammar_terminals() -> dict[str, list[str]]:
    return terminal_strings(syntax.grammar_path().read_text(encoding="utf-8"))


def test_grammar_path_is_the_checkout_grammar_or_the_packaged_copy():
    path = syntax.grammar_path()
    assert path.name == "ffn.lark" and path.is_file()
    assert path.read_text(encoding="utf-8") == (ROOT / "grammar" / "ffn.lark").read_text(encoding="utf-8")
    assert syntax.grammar_text() == path.read_text(encoding="utf-8")


def test_parser_is_built_from_grammar_path():
    g = syntax._get()
    names = {t.name for t in g.tree_parser.terminals}
    assert set(TERMINAL_KIND) <= names


@pytest.mark.parametrize("terminal", sorted(TERMINAL_KIND))
def test_terminal_names_equal_op_table_rows(grammar_terminals, terminal):
    kind = TERMINAL_KIND[terminal]
    in_grammar = grammar_terminals[terminal]
    in_table = [o.name for o in OPS.values() if o.kind is kind]
    assert len(in_grammar) == len(set(in_grammar)), f"duplicate names in {terminal}"
    assert sorted(in_grammar) == sorted(in_table)
    assert in_table, f"no rows of kind {kind}"


def test_every_op_row_is_in_exactly_one_terminal(grammar_terminals):
    listed = [n for t in TERMINAL_KIND for n in grammar_terminals[t]]
    assert sorted(listed) == sorted(OPS)


def test_terminal_extractor_on_a_known_snippet():
    snippet = 'A: "p" | "q"\n   | "r"\nB: "s"\n// C: "t"\nD: /re/\n'
    assert terminal_strings(snippet) == {"A": ["p", "q", "r"], "B": ["s"], "D": []}
