"""Helpers shared by the test modules (plain functions and data, no fixtures)."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTES = ROOT / "docs" / "reference_notes.md"
EXAMPLES = ROOT / "exprsearch" / "data" / "examples.ffn"

STANDARD_FFN = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"


def notes_section(n: int) -> str:
    """Text of section ``n`` ("## n. ...") of docs/reference_notes.md."""
    text = NOTES.read_text(encoding="utf-8")
    m = re.search(rf"^## {n}\..*?(?=^## \d+\.|\Z)", text, re.M | re.S)
    assert m, f"section {n} missing from {NOTES}"
    return m.group(0)


@lru_cache(maxsize=None)
def efficientbert_layers() -> tuple[str, ...]:
    """The 6 published per-layer expressions: the table rows ``| k | `expr` |`` of section 1."""
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*`([^`]+)`\s*\|", notes_section(1), re.M)
    assert [int(k) for k, _ in rows] == [1, 2, 3, 4, 5, 6], rows
    return tuple(e for _, e in rows)


@lru_cache(maxsize=None)
def published_expressions() -> tuple[str, ...]:
    """Every complete expression quoted in section 1 (elided ones, with '…', are skipped)."""
    quoted = re.findall(r"`([^`]+)`", notes_section(1))
    out: list[str] = []
    for q in quoted:
        if "…" in q or "(" not in q or "wb2" not in q:
            continue
        # "linearX_Y(...)" stands for the 16 stage-1 seeds, X, Y in 1..4
        expanded = ([q.replace("linearX_Y", f"linear{x}_{y}") for x in range(1, 5) for y in range(1, 5)]
                    if "linearX_Y" in q else [q])
        out += [e for e in expanded if e not in out]
    return tuple(out)


@lru_cache(maxsize=None)
def example_lines() -> tuple[str, ...]:
    """Non-comment lines of the bundled examples file."""
    return tuple(line.strip() for line in EXAMPLES.read_text(encoding="utf-8").splitlines()
                 if line.strip() and not line.lstrip().startswith("#"))


def caret_info(message: str) -> tuple[str, str, int, int]:
    """(echoed source line, caret line, caret column in the echo, number of carets) of a
    rendered DSL error; asserts the caret line is present and well formed."""
    lines = message.splitlines()
    idx = [i for i, ln in enumerate(lines) if ln.strip() and set(ln.strip()) == {"^"}]
    assert len(idx) == 1, f"expected exactly one caret line in:\n{message}"
    i = idx[0]
    assert i >= 1, message
    caret = lines[i]
    start = caret.index("^")
    n = len(caret.strip())
    return lines[i - 1], caret, start, n


def assert_caret_matches_span(err, text: str | None = None) -> None:
    """The caret under the echoed source line sits exactly under ``err.span`` (ASCII text), and
    the 'line L, column C' location agrees with the span."""
    text = err.text if text is None else text
    assert err.span is not None, f"error has no span: {err!r}"
    msg = str(err)
    echo, _caret, col, n = caret_info(msg)
    start, end = err.span
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    line_end = len(text) if line_end < 0 else line_end
    want_line = text.count("\n", 0, start) + 1
    want_col = start - line_start + 1
    m = re.search(r"(?:line (\d+), column (\d+)|:(\d+):(\d+):)", msg)
    assert m, msg
    got_line, got_col = (int(m.group(1)), int(m.group(2))) if m.group(1) else (int(m.group(3)), int(m.group(4)))
    assert got_col == want_col, msg
    if err.origin is None:
        assert got_line == want_line, msg
    if text.isascii() and text[line_start:line_end].isprintable():
        # the echoed line (after the 4-space indent) shows the source; the caret column in it
        # points at the first character of the span
        shown = echo[4:]
        pos = col - 4
        assert 0 <= pos < len(shown) + 1, msg
        if start < line_end:
            want = text[start:min(max(end, start + 1), line_end)][:n]
            assert shown[pos:pos + len(want)] == want, msg
            assert n == len(want), msg
        if not shown.startswith("..."):
            assert shown == text[line_start:line_end][:len(shown)], msg
            assert pos == start - line_start, msg
