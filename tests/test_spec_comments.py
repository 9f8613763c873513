"""Comments in spec files (issue 31, item 3): a ``(`` or ``)`` inside a ``#`` comment is text, not
syntax -- it neither joins the following lines into one layer nor unbalances anything."""
from __future__ import annotations

import pytest
from _support import STANDARD_FFN

from exprsearch.errors import DSLSyntaxError
from exprsearch.lang.parsing import parse, parse_spec, read_spec

L2 = "linear1_2(relu(linear1_2(x,wb1)),wb2)"
L3 = "linear1_3(tanh(linear1_3(x,wb1)),wb2)"


@pytest.mark.parametrize("comment", ["# a (note", "# ((((", "# f(x", "# )", "# (a) (b", "#(" * 60])
def test_a_parenthesis_in_a_comment_does_not_swallow_the_next_lines(comment):
    spec = parse_spec(f"{STANDARD_FFN}  {comment}\n{L2}\n{L3}\n")
    assert [str(e) for e in spec] == [STANDARD_FFN, L2, L3]


def test_a_comment_inside_an_open_parenthesis_ends_at_its_line():
    text = f"linear1_1(gelu( # the (first\n  linear1_1(x,wb1)),wb2)\n{L2}\n"
    assert [str(e) for e in parse_spec(text)] == [STANDARD_FFN, L2]
    assert str(parse(f"linear1_1(gelu( # (\n linear1_1(x,wb1)),wb2)")) == STANDARD_FFN


def test_a_three_layer_file_with_commented_parentheses_reads_as_three_layers(tmp_path):
    f = tmp_path / "spec.ffn"
    f.write_text(f"# layers (bottom to top)\n{STANDARD_FFN}  # GELU (standard\n{L2}  # (\n{L3}\n")
    assert len(read_spec(f)) == 3


def test_errors_after_a_commented_parenthesis_point_at_the_right_line():
    with pytest.raises(DSLSyntaxError) as err:
        parse_spec(f"{STANDARD_FFN}  # (\ngelu(x\n")
    assert "line 2" in str(err.value)
