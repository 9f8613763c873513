"""Bad input: every failure is a DSLError subclass with a precise message and a caret."""
from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest
from _support import ROOT, STANDARD_FFN, assert_caret_matches_span, caret_info

import exprsearch
from exprsearch import errors as E
from exprsearch.lang.parsing import parse, parse_spec, read_spec
from exprsearch.lang.syntax import MAX_CHARS, MAX_NESTING, parse_layers

# (input, mode, error class, message substring, hint substring or None, where)
# where: what the caret must underline -- a substring (its first occurrence), (substring, n) for
# the n-th occurrence (0-based), an int (a 1-character caret at that offset), or None (no check)
# mode: "strict" = parse(s); "relaxed" = parse(s, strict=False); "spec" = parse_spec(s)
TABLE = [
    # -- syntax -------------------------------------------------------------------------------
    ("gelu(x", "strict", E.DSLSyntaxError, "unexpected end of input; expected ')' or ','", None, 6),
    ("linear1_1(gelu(linear1_1(x,wb1),wb2)", "strict", E.DSLSyntaxError, "unexpected end of input", None, None),
    ("gelu(x))", "strict", E.DSLSyntaxError, "unexpected ')'", None, (")", 1)),
    ("add(x,,x)", "strict", E.DSLSyntaxError, "unexpected ','; expected an expression", None, (",", 1)),
    ("gelu(x,)", "strict", E.DSLSyntaxError, "unexpected ')'; expected an expression", None, ")"),
    (",x", "strict", E.DSLSyntaxError, "unexpected ','", None, ","),
    ("gelu()", "strict", E.DSLSyntaxError, "unexpected ')'; expected an expression", None, ")"),
    ("x x", "strict", E.DSLSyntaxError, "unexpected 'x'", None, ("x", 1)),
    ("x(x)", "strict", E.DSLSyntaxError, "unexpected '('", None, "("),
    ("gelu(1)", "strict", E.DSLSyntaxError, "unexpected '1'", None, "1"),
    ("[x", "spec", E.DSLSyntaxError, "expected ']'", None, None),
    ("x]", "spec", E.DSLSyntaxError, "unexpected ']'", None, "]"),
    ("[]", "spec", E.DSLSyntaxError, "unexpected ']'", None, "]"),
    (STANDARD_FFN + " " + STANDARD_FFN, "strict", E.DSLSyntaxError, "unexpected 'linear1_1'", None,
     ("linear1_1", 2)),
    (STANDARD_FFN + "\n" + STANDARD_FFN, "strict", E.DSLSyntaxError, "expected one expression, got a model spec of 2 layers",
     "parse_spec", None),
    # -- unknown names, with did-you-mean --------------------------------------------------------
    ("gleu(x)", "strict", E.UnknownNameError, "unknown name 'gleu'", "did you mean 'gelu'?", "gleu"),
    ("linear1_1(sigmod(linear1_1(x,wb1)),wb2)", "strict", E.UnknownNameError, "unknown name 'sigmod'",
     "did you mean 'sigmoid'?", "sigmod"),
    ("linear1_1(gelu(linear1_1(x,wb4)),wb2)", "strict", E.UnknownNameError, "unknown name 'wb4'", "did you mean 'wb", "wb4"),
    ("gelu2(x)", "strict", E.UnknownNameError, "unknown name 'gelu2'", "did you mean 'gelu'?", "gelu2"),
    ("linear5_1(x,wb1)", "strict", E.UnknownNameError, "unknown name 'linear5_1'",
     "linearX_Y needs X in [1, 2, 3, 4] (stacked blocks) and Y in [1, 2, 3, 4]", "linear5_1"),
    ("linear1_01(x,wb1)", "strict", E.UnknownNameError, "unknown name 'linear1_01'", "X in [1, 2, 3, 4]", "linear1_01"),
    ("relu(y)", "strict", E.UnknownNameError, "unknown name 'y'", None, "y"),
    ("GELU(x)", "strict", E.UnknownNameError, "unknown name 'GELU'", None, "GELU"),
    # -- arity: the message names the operator ------------------------------------------------
    ("gelu(x,x)", "strict", E.ArityError, "gelu takes 1 argument, got 2", None, "gelu(x,x)"),
    ("add(x)", "strict", E.ArityError, "add takes 2 arguments, got 1", None, "add(x)"),
    ("linear1_1(gelu(linear1_1(x)),wb2)", "strict", E.ArityError, "linear1_1 takes 2 arguments, got 1", None, "linear1_1(x)"),
    ("linear1_1(gelu(linear1_1(x,wb1)),wb2,x)", "strict", E.ArityError, "linear1_1 takes 2 arguments, got 3", None, None),
    ("max(x,x,x)", "relaxed", E.ArityError, "max takes 2 arguments, got 3", None, "max(x,x,x)"),
    # -- slot typing: caret under the offending argument ---------------------------------------
    ("add(x,wb1)", "strict", E.SlotTypeError, "slot 'wb1' is only valid as a linear's second argument", None, "wb1"),
    ("linear1_1(x,x)", "strict", E.SlotTypeError, "argument 2 must be a slot (wb1, wb2 or wb3), got 'x'", None, ("x", 1)),
    ("linear1_3(mul(gelu(linear1_3(x,wb1)),wb3),wb2)", "strict", E.SlotTypeError, "mul: argument 2 must be a tensor",
     None, "wb3"),
    ("linear1_1(gelu(wb1),wb2)", "strict", E.SlotTypeError, "gelu: argument 1 must be a tensor", None, "wb1"),
    ("linear1_1(wb1,wb2)", "strict", E.SlotTypeError, "linear1_1: argument 1", None, "wb1"),
    # a lone slot has no value (the fingerprint's evaluator failed on it: issue 23)
    ("wb1", "relaxed", E.SlotTypeError, "slot 'wb1' alone is no FFN", "an FFN maps x", "wb1"),
    ("[x; wb2]", "spec", E.SlotTypeError, "slot 'wb2' alone is no FFN", None, "wb2"),
    ("layer(ffn=wb1)", "spec", E.SlotTypeError, "slot 'wb1' alone is no FFN", None, "wb1"),
    # -- validity rules, one class each --------------------------------------------------------
    ("linear1_1(add(linear1_1(x,wb1),linear1_1(tanh(x),wb1)),wb2)", "strict", E.SlotCountError,
     "found 2 wb1 and 1 wb2", "--relaxed", "linear1_1(tanh(x),wb1)"),
    ("linear1_1(x,wb1)", "strict", E.SlotCountError, "found 1 wb1 and 0 wb2", None, "linear1_1(x,wb1)"),
    ("add(linear1_1(x,wb1),linear1_1(x,wb2))", "strict", E.SlotOrderError,
     "the wb1 linear must feed the wb2 linear", None, "linear1_1(x,wb1)"),
    ("add(linear1_1(gelu(linear1_1(x,wb1)),wb2),linear1_1(x,wb2))", "relaxed", E.SlotOrderError,
     "has no wb1 linear on its input path", None, ("linear1_1(x,wb2)", 0)),
    ("linear1_1(gelu(linear1_2(x,wb1)),wb2)", "strict", E.LinearMismatchError,
     "all linears must have the same X_Y; found linear1_1, linear1_2", "write linear1_1 everywhere", "linear1_2(x,wb1)"),
    ("linear2_2(gelu(linear1_2(x,wb1)),wb2)", "relaxed", E.LinearMismatchError, "same X_Y", None, None),
    ("linear1_2(relu(relu(linear1_2(x,wb1))),wb2)", "strict", E.NestedActivationError,
     "relu directly inside relu: activations may not nest", None, "relu(linear1_2(x,wb1))"),
    ("linear1_2(gelu(linear1_2(tanh(sigmoid(x)),wb1)),wb2)", "strict", E.NestedActivationError,
     "sigmoid directly inside tanh", None, "sigmoid(x)"),
    ("linear1_1(linear1_1(x,wb2),wb1)", "strict", E.NestedLinearError,
     "'linear1_1(x,wb2)' is inside the input of the wb1 linear", None, "linear1_1(x,wb2)"),
    ("linear1_1(linear1_1(linear1_1(x,wb1),wb1),wb2)", "relaxed", E.NestedLinearError,
     "inside the input of the wb1 linear", None, "linear1_1(x,wb1)"),
    ("linear1_1(gelu(linear1_1(sub(x,x),wb1)),wb2)", "strict", E.UnreachableInputError,
     "does not depend on x: 'sub(x,x)' is zero", None, "sub(x,x)"),
    ("linear1_1(gelu(linear1_1(sub(max(x,x),x),wb1)),wb2)", "strict", E.UnreachableInputError,
     "does not depend on x: 'sub(max(x,x),x)' is zero", "equal terms", "sub(max(x,x),x)"),
    ("linear1_1(gelu(linear1_1(mul(x,sub(x,neg(neg(x)))),wb1)),wb2)", "strict", E.UnreachableInputError,
     "'sub(x,neg(neg(x)))' is zero", None, "sub(x,neg(neg(x)))"),
    ("linear1_1(gelu(linear1_1(sub(tanh(x),tanh(x)),wb1)),wb2)", "relaxed", E.UnreachableInputError,
     "does not depend on x", None, None),
    ("add(x,linear1_1(gelu(linear1_1(x,wb1)),wb2))", "strict", E.OutputError,
     "only one activation may wrap the wb2 linear; found 'add' above it", "inside the wb2 linear's input",
     "add(x,linear1_1(gelu(linear1_1(x,wb1)),wb2))"),
    ("neg(linear1_1(gelu(linear1_1(x,wb1)),wb2))", "strict", E.OutputError, "found 'neg' above it", None, None),
    ("linear1_1(x,wb1)", "relaxed", E.WidthError, "must be H wide for the residual add; this one is d",
     "end with a wb2 linear", "linear1_1(x,wb1)"),
    ("mul(linear1_2(x,wb1),x)", "relaxed", E.WidthError, "this one is min(H,d)", None, None),
    # -- gated FFNs (the wb3 extension): at most one gate, same X_Y, linear-free input, feeds wb2 ----
    ("linear1_3(mul(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),linear1_3(tanh(x),wb3)),wb2)", "strict",
     E.SlotCountError, "at most one wb3 linear (its gate); found 2", "--relaxed", "linear1_3(tanh(x),wb3)"),
    ("linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_2(x,wb3)),wb2)", "strict", E.LinearMismatchError,
     "found linear1_2, linear1_3", "write linear1_3 everywhere", "linear1_2(x,wb3)"),
    ("linear1_3(gelu(linear1_3(mul(x,linear1_3(x,wb3)),wb1)),wb2)", "strict", E.NestedLinearError,
     "'linear1_3(x,wb3)' is inside the input of the wb1 linear", None, "linear1_3(x,wb3)"),
    ("linear1_3(mul(x,linear1_3(gelu(linear1_3(x,wb1)),wb3)),wb2)", "strict", E.NestedLinearError,
     "'linear1_3(x,wb1)' is inside the input of the wb3 linear", None, "linear1_3(x,wb1)"),
    ("mul(linear1_3(gelu(linear1_3(x,wb1)),wb2),linear1_3(x,wb3))", "strict", E.SlotOrderError,
     "the wb3 linear (a gate) must feed the wb2 linear", "gate the value path", "linear1_3(x,wb3)"),
    ("add(linear1_3(gelu(linear1_3(x,wb1)),wb2),mul(x,linear1_3(x,wb3)))", "relaxed", E.SlotOrderError,
     "the wb3 linear (a gate) must feed the wb2 linear", None, "linear1_3(x,wb3)"),
    # -- model specs: the error names the layer and points into the right line -----------------
    (STANDARD_FFN + "\nlinear1_2(relu(relu(linear1_2(x,wb1))),wb2)\n", "spec", E.NestedActivationError,
     "layer 2: relu directly inside relu", None, "relu(linear1_2(x,wb1))"),
    ("[" + STANDARD_FFN + "; " + STANDARD_FFN.replace("(x,wb1)", "(x,wb2)") + "]", "spec", E.SlotCountError,
     "layer 2: a valid FFN uses exactly one wb1 linear", None, None),
    ("# header\n" + STANDARD_FFN + "\n\n" + STANDARD_FFN + "\ngleu(x)\n", "spec", E.UnknownNameError,
     "unknown name 'gleu'", "gelu", "gleu"),
    (STANDARD_FFN + "\n" + "linear1_1(gelu(linear1_1(x,wb1)),wb2,\n  x)\n", "spec", E.ArityError,
     "linear1_1 takes 2 arguments, got 3", None, None),
    # -- model and attention fields are bounded like other sizes (issue 23) ---------------------
    ("model(hidden=" + "9" * 4400 + ")\nx", "spec", E.DSLError,
     "hidden=99999999999999999... is too large; the limit is 16,384", None, "9" * 4400),
    ("model(layers=99999999999999999999); x", "spec", E.DSLError,
     "layers=99999999999999999999 is too large; the limit is 256", None, "99999999999999999999"),
    ("model(layers=100000000); x", "spec", E.DSLError, "layers=100000000 is too large", None, "100000000"),
    ("layer(attn=lsra(heads=6, kernel=0100000), ffn=x)", "spec", E.DSLError, "kernel=100000 is too large",
     None, "0100000"),
]


def _run(text: str, mode: str):
    if mode == "strict":
        return parse(text)
    if mode == "relaxed":
        return parse(text, strict=False)
    return parse_spec(text)


@pytest.mark.parametrize("text, mode, cls, msg, hint, where", TABLE,
                         ids=[f"{i}-{row[2].__name__}" for i, row in enumerate(TABLE)])
def test_bad_input_table(text, mode, cls, msg, hint, where):
    with pytest.raises(E.DSLError) as info:
        _run(text, mode)
    err = info.value
    assert type(err) is cls, f"{type(err).__name__}: {err}"
    assert msg in err.message, str(err)
    if hint is not None:
        assert err.hint and hint in err.hint, str(err)
        assert f"  hint: {err.hint}" in str(err)
    assert err.text == text and err.span is not None
    assert_caret_matches_span(err)
    if isinstance(where, int):
        assert err.span[0] == where, str(err)
        assert caret_info(str(err))[3] == 1, str(err)
    elif where is not None:
        sub, nth = (where, 0) if isinstance(where, str) else where
        starts = [m.start() for m in re.finditer(re.escape(sub), text)]
        assert err.span == (starts[nth], starts[nth] + len(sub)), str(err)
        assert caret_info(str(err))[3] == len(sub), str(err)
    assert str(err).splitlines()[0] == err.message


def test_every_validity_rule_has_a_table_row():
    classes = {row[2] for row in TABLE}
    rules = {E.SlotCountError, E.SlotOrderError, E.LinearMismatchError, E.NestedActivationError,
             E.NestedLinearError, E.UnreachableInputError, E.OutputError, E.WidthError}
    assert rules <= classes
    assert len({c.rule for c in rules}) == len(rules)  # one rule name per class
    assert all(issubclass(c, E.ValidityError) for c in rules)


def test_spec_errors_report_the_line_of_the_bad_layer():
    text = f"{STANDARD_FFN}\n{STANDARD_FFN}\nlinear1_2(relu(relu(linear1_2(x,wb1))),wb2)\n"
    with pytest.raises(E.NestedActivationError) as info:
        parse_spec(text)
    s = str(info.value)
    assert s.startswith("layer 3: ")
    assert "at line 3, column 16:" in s
    echo, _, col, n = caret_info(s)
    assert echo.strip() == "linear1_2(relu(relu(linear1_2(x,wb1))),wb2)"
    assert echo[col:col + n] == "relu(linear1_2(x,wb1))"


def test_bracket_spec_error_points_into_the_second_layer():
    bad = "linear1_1(gelu(linear1_2(x,wb1)),wb2)"
    text = f"[{STANDARD_FFN}; {bad}]"
    with pytest.raises(E.LinearMismatchError) as info:
        parse_spec(text)
    err = info.value
    assert err.message.startswith("layer 2: ")
    assert err.span[0] > text.index(";")          # not inside layer 1
    assert text[err.span[0]:err.span[1]] == "linear1_2(x,wb1)"
    assert_caret_matches_span(err)


def test_same_subtree_in_two_layers_is_located_in_the_failing_layer():
    # relu(linear1_2(x,wb1)) occurs in layer 1 (legal) and in layer 2 (under another relu)
    ok = "linear1_2(relu(linear1_2(x,wb1)),wb2)"
    bad = "linear1_2(relu(relu(linear1_2(x,wb1))),wb2)"
    text = f"{ok}\n{bad}"
    with pytest.raises(E.NestedActivationError) as info:
        parse_spec(text)
    assert "at line 2, column 16" in str(info.value)


def test_read_spec_names_the_file_with_line_and_column(tmp_path: Path):
    path = tmp_path / "model.ffn"
    path.write_text(f"{STANDARD_FFN}\nlinear1_2(relu(relu(linear1_2(x,wb1))),wb2)\n", encoding="utf-8")
    with pytest.raises(E.NestedActivationError) as info:
        read_spec(path)
    s = str(info.value)
    assert f"at {path}:2:16:" in s
    assert_caret_matches_span(info.value)
    assert len(read_spec(ROOT / "exprsearch" / "data" / "examples.ffn")) == 10


def test_read_spec_of_missing_or_binary_file(tmp_path: Path):
    with pytest.raises(E.ExprSearchError, match="cannot read model spec"):
        read_spec(tmp_path / "nope.ffn")
    p = tmp_path / "bin.ffn"
    p.write_bytes(b"\xff\xfe\x00gelu")
    with pytest.raises(E.ExprSearchError, match="cannot read model spec"):
        read_spec(p)


def test_nested_activation_caret_points_at_the_nested_occurrence():
    text = "linear1_1(gelu(linear1_1(mul(relu(x),gelu(relu(x))),wb1)),wb2)"
    with pytest.raises(E.NestedActivationError) as info:
        parse(text)
    assert "relu directly inside gelu" in info.value.message
    want = text.index("gelu(relu(x))") + len("gelu(")
    assert info.value.span[0] == want, str(info.value)


# -- hostile input -------------------------------------------------------------------------------

def _garbage(rng: random.Random, n: int) -> str:
    ranges = [(0x00, 0x1F), (0x20, 0x7E), (0x80, 0x2FF), (0x300, 0x36F), (0x4E00, 0x4E80),
              (0x1F600, 0x1F64F), (0x202A, 0x202E), (0xD800, 0xDFFF), (0xFE00, 0xFE0F), (0xFFF0, 0xFFFF)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def _hostile_inputs() -> list[tuple[str, object]]:
    rng = random.Random(1234)
    items: list[tuple[str, object]] = [
        ("python-injection", "__import__('os').system('id')"),
        ("eval-call", "eval('1')"),
        ("exec-call", "exec(\"import os\")"),
        ("lambda", "(lambda: 0)()"),
        ("nest-10000", "gelu(" * 10_000 + "x" + ")" * 10_000),
        ("nest-10000-newlines", "gelu(\n" * 10_000 + "x" + ")" * 10_000),
        ("nest-open-only", "(" * 200_000),
        ("nest-101", "neg(" * (MAX_NESTING + 1) + "x" + ")" * (MAX_NESTING + 1)),
        ("one-megabyte", "x" * 1_000_000),
        ("one-megabyte-valid-prefix", STANDARD_FFN + ";" + "x;" * 500_000),
        ("just-over-limit", "x" * (MAX_CHARS + 1)),
        ("empty", ""),
        ("spaces", "   "),
        ("whitespace-mix", " \t\r\f \n\n \t"),
        ("only-comment", "# nothing here"),
        ("only-separators", ";;;\n;\n"),
        ("empty-brackets", "[ ]"),
        ("nul-bytes", "\x00" * 64),
        ("nul-inside", "linear1_1(gelu(linear1_1(x,\x00wb1)),wb2)"),
        ("emoji", "😀🔥🚀"),
        ("emoji-inside", "linear1_1(gelu(linear1_1(x😀,wb1)),wb2)"),
        ("rtl-override", "\u202egelu(x)"),
        ("fullwidth-name", "ｇｅｌｕ(x)"),
        ("lone-surrogate", "gelu(\ud800)"),
        ("bom", "\ufeff" + STANDARD_FFN),
        ("tab-indent-garbage", "\t\t)))((("),
        ("non-str-none", None),
        ("non-str-bytes", STANDARD_FFN.encode()),
        ("non-str-int", 42),
    ]
    items += [(f"unicode-{i}", _garbage(rng, rng.randint(1, 300))) for i in range(60)]
    return items


HOSTILE = _hostile_inputs()


@pytest.mark.parametrize("text", [t for _, t in HOSTILE], ids=[n for n, _ in HOSTILE])
def test_hostile_input_raises_a_dsl_error(text):
    for fn in (parse, lambda s: parse(s, strict=False), parse_spec, parse_layers):
        with pytest.raises(E.DSLError) as info:
            fn(text)
        rendered = str(info.value)  # rendering never fails either
        assert rendered.startswith(info.value.message)
        if info.value.text is not None and info.value.span is not None:
            caret_info(rendered)
        assert len(rendered) < 2_000, "error messages stay short even for huge inputs"


def test_huge_inputs_get_the_dedicated_errors():
    with pytest.raises(E.InputTooLargeError, match="limit is 100,000"):
        parse("x" * 1_000_000)
    with pytest.raises(E.NestingTooDeepError, match=f"deeper than {MAX_NESTING}"):
        parse("gelu(" * 10_000 + "x" + ")" * 10_000)
    # right at the limits is fine
    deep = "neg(" * MAX_NESTING + "x" + ")" * MAX_NESTING
    assert parse_layers(deep)[0].depth == MAX_NESTING
    assert len(parse_layers(";".join(["x"] * (MAX_CHARS // 2)))) == MAX_CHARS // 2


def test_deep_nesting_never_hits_python_recursion_limit():
    limit = sys.getrecursionlimit()
    for n in (MAX_NESTING, MAX_NESTING + 1, 5_000):
        text = "sqrt_abs(" * n + "x" + ")" * n
        try:
            parse_layers(text)
        except E.DSLError:
            pass
    assert sys.getrecursionlimit() == limit


def test_library_source_never_calls_eval_or_exec():
    pkg = Path(exprsearch.__file__).resolve().parent
    files = sorted(pkg.rglob("*.py"))
    assert len(files) >= 15
    pattern = re.compile(r"(?<![\w.])(eval|exec)\s*\(")
    hits = [f"{f.name}:{i}: {line.strip()}" for f in files
            for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
            if pattern.search(line.split("#", 1)[0])]
    assert not hits, hits
    assert pattern.search("x = eval(s)") and not pattern.search("model.eval()")


def test_a_non_ascii_letter_is_the_error_not_the_name_before_it():
    with pytest.raises(E.DSLSyntaxError) as info:
        parse("linear1_1(gélu(linear1_1(x,wb1)),wb2)")
    err = info.value
    assert not isinstance(err, E.UnknownNameError)
    assert "unexpected character 'é'" in str(err) and "unknown name" not in str(err)
    assert err.span == (11, 12)  # under the 'é', not the 'g'


def test_deep_nesting_is_rejected_by_the_text_guard_before_the_parser(monkeypatch):
    import exprsearch.lang.syntax as syntax_mod

    def no_parsing(*a, **k):
        raise AssertionError("the parser ran on text the nesting guard should have refused")

    monkeypatch.setattr(syntax_mod, "_get", no_parsing)  # the grammar (both parse paths) is never reached
    text = "tanh(" * 5000 + "x" + ")" * 5000
    with pytest.raises(E.NestingTooDeepError) as info:
        parse(text)
    assert info.value.span == (5 * MAX_NESTING + 4, 5 * MAX_NESTING + 5)  # the first '(' past the limit
