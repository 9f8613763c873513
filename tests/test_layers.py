"""Imports point backwards only: the packages are layers in data-flow order.

    exprsearch.errors  <  exprsearch.lang  <  exprsearch.space  <  exprsearch.compiler  <  exprsearch.rows
                       <  exprsearch.engine  <  exprsearch.kd  <  exprsearch.search  <  exprsearch.ship
                       <  exprsearch.cli

A module may import its own layer and any earlier one, never a later one -- at module level, inside
a function, or for annotations only (under ``if TYPE_CHECKING:``: a later layer's object a function
takes is typed by a Protocol of what it reads instead).  Inside rows, engine and kd no two modules
import each other at run time.  The package root ``exprsearch`` re-exports the language and the space (its
layer is ``space``); ``exprsearch.__main__`` belongs to the command line.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["exprsearch.errors", "exprsearch.lang", "exprsearch.space", "exprsearch.compiler", "exprsearch.rows",
          "exprsearch.engine", "exprsearch.kd", "exprsearch.search", "exprsearch.ship", "exprsearch.cli"]


def layer(module: str) -> int | None:
    """Index of the layer owning ``module`` (None: not ours, e.g. torch)."""
    if module in ("exprsearch", "exprsearch.__init__"):
        return LAYERS.index("exprsearch.space")
    if module == "exprsearch.__main__":
        return LAYERS.index("exprsearch.cli")
    if module == "exprsearch._grammar":
        return LAYERS.index("exprsearch.lang")
    best = None
    for i, name in enumerate(LAYERS):
        if module == name or module.startswith(name + "."):
            best = i
    if best is None and module.startswith("exprsearch."):
        raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")
    return best


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = ("exprsearch",) + rel.parts if rel.parts[0] == "compiler" else rel.parts  # installs as exprsearch.compiler
    return ".".join(parts)


def _type_only(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks (imports for annotations only)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def imports(path: Path, runtime: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, relative ones resolved; ``runtime``:
    only those that run (not the ones under ``if TYPE_CHECKING:``)."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    out = []
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_only(tree) if runtime else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            for a in node.names:  # `from pkg import module` imports that module too
                sub = ROOT.joinpath(*f"{target}.{a.name}".removeprefix("exprsearch.").split(".")) \
                    if target.startswith("exprsearch.compiler") else ROOT.joinpath(*f"{target}.{a.name}".split("."))
                if sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file():
                    out.append((node.lineno, f"{target}.{a.name}"))
    return out


SOURCES = sorted(p for d in ("exprsearch", "compiler") for p in (ROOT / d).rglob("*.py"))


def test_every_package_is_a_layer():
    pkgs = {module_name(p.parent / "x").rsplit(".", 1)[0] for p in SOURCES}
    for pkg in pkgs:
        assert pkg in ("exprsearch",) or layer(pkg) is not None, pkg


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_backwards(path: Path):
    here = layer(module_name(path).removesuffix(".__init__"))
    forward = []
    for line, target in imports(path):
        there = layer(target) if target.startswith("exprsearch") else None
        if there is not None and here is not None and there > here:
            forward.append(f"line {line}: {target} ({LAYERS[there]}) from {LAYERS[here]}")
    assert not forward, "imports pointing forward:\n" + "\n".join(forward)


def test_the_check_sees_a_forward_import(tmp_path):
    bad = ROOT / "exprsearch" / "lang" / "_probe_forward.py"
    try:
        bad.write_text("def f():\n    from ..kd.evaluate import Evaluator\n")
        found = [t for _, t in imports(bad)]
        assert "exprsearch.kd.evaluate" in found and layer("exprsearch.kd.evaluate") > layer("exprsearch.lang.x")
    finally:
        bad.unlink()



def cycles(package: str, sources: list[Path] = SOURCES) -> list[list[str]]:
    """Import cycles among the modules of one package: imports inside functions count too, those
    for annotations only (``if TYPE_CHECKING:``) do not."""
    import networkx as nx
    graph = nx.DiGraph()
    for path in sources:
        mod = module_name(path).removesuffix(".__init__")
        if mod.startswith(package + "."):
            graph.add_node(mod)
            graph.add_edges_from((mod, t) for _, t in imports(path, runtime=True)
                                 if t.startswith(package + ".") and t != mod)
    return [sorted(c) for c in nx.simple_cycles(graph)]


@pytest.mark.parametrize("package", ["exprsearch.rows", "exprsearch.engine", "exprsearch.kd"])
def test_no_import_cycle_inside(package: str):
    # e.g. glue -> userdata -> records: the reader of your own files does not import glue back
    assert not cycles(package), cycles(package)


def test_the_check_sees_a_cycle():
    a, b = ROOT / "exprsearch" / "rows" / "_probe_a.py", ROOT / "exprsearch" / "rows" / "_probe_b.py"
    try:
        a.write_text("from .records import Task\nfrom ._probe_b import g\n")
        b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._probe_a import g\n"
                     "def g():\n    from ._probe_a import Task\n")
        assert cycles("exprsearch.rows", SOURCES + [a, b]) == [["exprsearch.rows._probe_a", "exprsearch.rows._probe_b"]]
        b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._probe_a import g\n")
        assert cycles("exprsearch.rows", SOURCES + [a, b]) == []  # annotations only: no cycle at run time
        assert "exprsearch.rows._probe_a" in [t for _, t in imports(b)]  # ... but a layer's import all the same
    finally:
        a.unlink()
        b.unlink()
