"""The built wheel carries the grammar and the examples, and an installed copy finds them."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from _support import ROOT, STANDARD_FFN

# What pyproject.toml packages (plus the files setuptools reads to build).
SOURCES = ["pyproject.toml", "README.md", "exprsearch", "grammar", "compiler"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed in this environment; the wheel cannot be built "
                    "without build isolation (and the tests may not install packages)")
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout, and a
    # stale build/lib could leak files into later wheels.
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif p.exists():
            shutil.copy2(p, src / name)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--no-cache-dir", "-q", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("exprsearch-*.whl")
    return whl


def test_wheel_contains_grammar_and_examples(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "exprsearch/_grammar/ffn.lark" in names
    assert "exprsearch/data/examples.ffn" in names
    assert "exprsearch/lang/syntax.py" in names and "exprsearch/lang/ops.py" in names
    assert {f"exprsearch/{p}/__init__.py" for p in ("lang", "space", "compiler", "rows", "engine", "kd", "search", "ship",
                                                    "cli")} <= names
    # every package of the checkout ships (pyproject's list names each one)
    assert {p.relative_to(ROOT).as_posix() for p in (ROOT / "exprsearch").rglob("*/__init__.py")} <= names
    assert "exprsearch/py.typed" in names and "exprsearch/compiler/lower.py" in names
    # the shipped model's own code: save_pretrained copies these next to the weights
    assert {f"exprsearch/compiler/hf/{m}_exprbert.py" for m in ("configuration", "modeling", "lsra", "exits", "ffn")} <= names
    assert not any(n.startswith("compiler/") for n in names)  # no top-level package to clash with another
    with zipfile.ZipFile(wheel) as z:
        assert z.read("exprsearch/_grammar/ffn.lark") == (ROOT / "grammar" / "ffn.lark").read_bytes()
        assert z.read("exprsearch/data/examples.ffn") == (ROOT / "exprsearch" / "data" / "examples.ffn").read_bytes()
        entry = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert entry and "exprsearch = exprsearch.cli.main:main" in z.read(entry[0]).decode()


def test_unpacked_wheel_finds_its_grammar(wheel: Path, tmp_path: Path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    code = ("import exprsearch, exprsearch.lang.syntax as s; "
            f"print(exprsearch.parse({STANDARD_FFN!r})); print(exprsearch.__file__); print(s.grammar_path()); "
            "print(exprsearch.lang.canon.VERIFY)")
    env = {**os.environ, "PYTHONPATH": str(site), "EXPRSEARCH_VERIFY": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=site, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    printed, module_file, grammar, verify = proc.stdout.splitlines()
    assert printed == STANDARD_FFN
    # the imported package and its grammar are the unpacked copy, not the checkout
    assert Path(module_file).resolve().is_relative_to(site.resolve())
    assert Path(grammar).resolve() == (site / "exprsearch" / "_grammar" / "ffn.lark").resolve()
    assert verify == "True"
