"""The REPL (scripted, and through a pseudo-terminal), the plots and the HTML report."""
from __future__ import annotations

import io
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exprsearch.cli.repl import COMMANDS, Repl

STD = "linear1_1(gelu(linear1_1(x,wb1)),wb2)"
L5 = "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"


def run(lines: list[str]) -> str:
    out = io.StringIO()
    Repl(out=out).run_lines(lines)
    return out.getvalue()


def test_typing_an_expression_shows_canonical_form_and_validity():
    text = run([L5])
    assert "canonical  linear1_2(relu(mul(x,linear1_2(x,wb1))),wb2)" in text
    assert "valid      yes (strict)" in text


def test_relaxed_only_and_invalid_expressions_say_why():
    text = run(["linear1_1(relu(relu(linear1_1(x,wb1))),wb2)", "linear1_1(x,wb1)"])
    assert "relaxed only -- strict rule no-nested-activation" in text
    assert "no -- output-width" in text


@pytest.mark.parametrize("cmd, expect", [
    (":ast", "└── wb2"), (":canon", "class      linear1_2(relu(mul(x,linear1_2(x,wb1))),wb2)"),
    (":sympy", "lin1_2_wb2(Max(0, x*lin1_2_wb1(x)))"), (":dag", "nodes 7, edges 7"),
    (":fx 16", "torch._C._nn.linear"), (":cost 384", "params 148,800"),
    (":help", ":bench"), (":bench 32", "vs standard FFN"),
])
def test_each_command(cmd, expect):
    assert expect in run([L5, cmd])


def test_canon_groups_equivalent_expressions_typed_in_the_session():
    text = run(["max(x,tanh(x))", "max(tanh(x),x)", ":canon"])
    assert "(2 expression(s) typed in this session)" in text


def test_errors_never_end_the_session():
    text = run(["gleu(x)", ":nope", ":cost abc", ":top", ":eval", STD, ":dag"])
    assert "did you mean 'gelu'?" in text
    assert "unknown command :nope" in text
    assert "expected numbers" in text and "no run loaded" in text and "usage: :eval" in text
    assert "nodes 6" in text  # the session went on after every error


def test_bad_sizes_and_lone_slots_never_end_the_session():
    """`:cost -1` ended the REPL with a RuntimeError, `wb1` with an IndexError (issue 23)."""
    text = run([L5, ":cost -1", ":fx 0", ":cost 384 100000", "wb1", ":dag"])
    assert text.count("is out of range: numbers here are 1 to 16,384") == 3
    assert "error: slot 'wb1' alone is no FFN" in text
    assert "internal error" not in text
    assert "nodes 7, edges 7" in text  # the session went on, the expression kept


def test_commands_table_is_complete():
    for c in COMMANDS:
        if c not in (":quit",):
            assert hasattr(Repl, "cmd_" + c[1:]), c


def test_plot_command_writes_a_non_blank_png(tmp_path):
    from matplotlib.image import imread
    path = tmp_path / "p.png"
    assert f"wrote {path}" in run([STD, f":plot {path}"])
    img = imread(path)
    assert img.shape[0] > 200 and img.std() > 0.05


def test_piped_repl_through_the_cli(tmp_path):
    script = "\n".join([L5, ":dag", "gleu(x)", ":quit", ":dag"]) + "\n"
    p = subprocess.run([sys.executable, "-m", "exprsearch", "repl"], input=script, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0
    assert "canonical  linear1_2" in p.stdout and "did you mean" in p.stdout
    assert p.stdout.count("nodes 7") == 1  # nothing after :quit
    assert "Traceback" not in p.stderr


def _pty_session(keys: list[bytes], home: Path) -> str:
    """Drive the real interactive REPL on a pseudo-terminal; never blocks past a deadline.

    The child is a plain subprocess (no fork of this threaded process) and is killed if it has
    not exited by the deadline, so a stuck terminal fails the test instead of hanging CI.
    """
    master, slave = pty.openpty()
    env = dict(os.environ, EXPRSEARCH_CACHE=str(home), TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "exprsearch", "repl"], stdin=slave, stdout=slave,
                            stderr=slave, env=env, start_new_session=True, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.time() + 240  # a loaded CI machine may take minutes to import torch

    def read(until: bytes | None = None, wait: float = 0.5) -> bool:
        nonlocal out
        end = min(time.time() + wait, deadline)
        while time.time() < end:
            r, _, _ = select.select([master], [], [], 0.1)
            if not r:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                return False
            if not chunk:
                return False
            out += chunk
            if until and until in out:
                return True
        return True

    try:
        read(b"ffn>", wait=180)
        assert b"ffn>" in out, f"the REPL showed no prompt: {out[-500:]!r}"
        for k in keys:
            os.write(master, k)
            read(wait=1.5)
        os.write(master, b"\x04")  # Ctrl-D
        while proc.poll() is None and time.time() < deadline and read(wait=0.5):
            pass
        try:  # the terminal closes a moment before the process can be reaped
            proc.wait(timeout=max(1.0, min(30.0, deadline - time.time())))
        except subprocess.TimeoutExpired:
            pass
        assert proc.poll() == 0, f"the REPL did not exit on Ctrl-D: {out[-500:]!r}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        os.close(master)
    return out.decode(errors="replace")


@pytest.mark.skipif(sys.platform != "linux", reason="pseudo-terminal test")
def test_interactive_completion_validation_and_history(tmp_path):
    home = tmp_path / "cache"
    # the failed Enter leaves the cursor at the error: Ctrl-E (end), Ctrl-U (clear) before Ctrl-D exits
    text = _pty_session([b"linear1_1(ge", b"\t", b"(linear1_1(x,wb1)),wb2)\r", b"gleu(x)\r", b"\x05\x15"], home)
    assert "exprsearch REPL" in text
    assert " gelu " in text  # the completion menu offered the op name (Tab inserted it)
    assert "canonical" in text  # the expression was accepted
    assert "unknown name" in text  # the validator shows the syntax error on enter
    history = (home / "repl_history").read_text()
    assert "linear1_1(gelu(linear1_1(x,wb1)),wb2)" in history  # kept across sessions
    text2 = _pty_session([b"\x1b[A", b"\r"], home)  # up-arrow recalls the last entry
    assert "canonical  linear1_1(gelu(linear1_1(x,wb1)),wb2)" in text2


# -- plots and report -------------------------------------------------------------------------

def _rows(n: int = 8) -> list[dict]:
    import random
    rng = random.Random(0)
    rows = []
    for i in range(n):
        rows.append({"key": f"k{i}", "spec": f"[{STD}]", "status": "ok", "score": 50 + rng.random() * 10,
                     "params": 1e6 * (10 + rng.random() * 5), "latency_ms": 1 + rng.random(), "seq": i,
                     "stage": 1, "metrics": {"RTE": {"acc": 0.5}}, "flops": 1e6,
                     "curves": {"RTE": {"loss": [[10, 1.0 - 0.01 * i + rng.random() * 0.01]], "dev": []}}})
    return rows


def _check_png(path: Path) -> None:
    from matplotlib.image import imread
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img.std() > 0.02, "the image is blank"


def test_plots_are_valid_non_blank_images(tmp_path):
    import exprsearch as es
    from exprsearch.search.plots import (
        plot_nonlinearity,
        plot_pareto,
        plot_progress,
        plot_proxy,
    )
    from exprsearch.search.stats import kendall_tau
    _check_png(plot_nonlinearity([es.parse(STD), es.parse(L5)], tmp_path / "nl.png"))
    _check_png(plot_progress({"evolution": _rows(), "random": _rows(5)}, tmp_path / "prog.png"))
    _check_png(plot_pareto(_rows(), tmp_path / "par.png", standard=55, teacher=62))
    _check_png(plot_proxy([(i, i + (i % 3)) for i in range(10)], tmp_path / "px.png"))
    from scipy.stats import kendalltau
    a, b = [3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]
    assert kendall_tau(a, b) == pytest.approx(kendalltau(a, b)[0])


@pytest.fixture
def stored_run(tmp_path):
    from exprsearch.search.store import Store
    st = Store(tmp_path / "runs.db")
    run = st.new_run({"search": {"sampler": "evolution", "candidates": 8}, "eval": {"tasks": ["RTE"], "steps": 5}})
    for r in _rows():
        st.add(run, r, eval_hash="h")
        if int(r["key"][1:]) < 4:  # re-scored with one more seed: the proxy plot's points
            st.add_reseed(run, r["key"], 1, {"status": "ok", "score": r["score"] + 1.0, "metrics": r["metrics"]})
    return st, run


def test_report_has_every_section_and_its_images(stored_run, tmp_path):
    from exprsearch.search.report import SECTIONS, write_report
    st, run = stored_run
    page = write_report(st, run, tmp_path / "r.html").read_text()
    for s in SECTIONS:
        assert f'<h2 id="{s}">' in page
    assert page.count("data:image/png;base64,") == 4  # pareto, progress, nonlinearity, proxy
    assert "exprsearch search" in page and "--sampler evolution" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained


def test_report_cli(stored_run, tmp_path, capsys):
    from exprsearch.cli.main import main
    st, run = stored_run
    assert main(["report", run, "--store", str(st.path), "-o", str(tmp_path / "x.html")]) == 0
    assert (tmp_path / "x.html").stat().st_size > 10_000


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_report_renders_in_headless_chromium(stored_run, tmp_path):
    from exprsearch.search.report import write_report
    st, run = stored_run
    page = write_report(st, run, tmp_path / "r.html")
    shot = tmp_path / "shot.png"
    # no pipes (a lingering chromium helper would keep them open) and its own process group, killed
    # as a whole if the screenshot takes too long
    proc = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                             "--no-first-run", "--disable-background-networking", "--disable-component-update",
                             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1800",
                             f"--screenshot={shot}", page.as_uri()], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
    _check_png(shot)
