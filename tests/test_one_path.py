"""One path from spec to trained student (issue 23): text is parsed only at the edges, each layer
is lowered once, and a bug in our code surfaces instead of becoming a failed candidate.

The edges that may turn spec text into a ``ModelSpec``: the command line and the REPL
(``exprsearch.cli``), the store reader (``exprsearch.search.store.row_spec``), a saved model's
config (``from_pretrained``: ``compiler.student.spec_of``, which ``load_student`` calls) and
the search's attention-choice option (``parse_attn_choices``: config text).
"""
from __future__ import annotations

import sys

import pytest
from conftest_search import (  # noqa: F401
    easy_glue,
    kd_cache,
    one_thread,
    quiet,
    run_search,
    search_ecfg,
    tiny_teacher,
)

import exprsearch.lang.parsing as parsing
from exprsearch.kd.distill import KDLoss
from exprsearch.kd.evaluate import Evaluator
from exprsearch.lang.parsing import parse_spec
from exprsearch.search.store import Store, row_spec

pytestmark = pytest.mark.usefixtures("one_thread")

EDGES = ("exprsearch.cli", "exprsearch.search.store", "tests", "test_", "conftest")
EDGE_FUNCTIONS = {("exprsearch.compiler.student", "spec_of"), ("exprsearch.space.samplers", "parse_attn_choices")}


def _caller(depth: int = 2) -> tuple[str, str]:
    """The first frame outside the language package that led to a parse."""
    f = sys._getframe(depth)
    while f is not None and f.f_globals.get("__name__", "").startswith("exprsearch.lang"):
        f = f.f_back
    return (f.f_globals.get("__name__", "?"), f.f_code.co_name) if f is not None else ("?", "?")


@pytest.fixture
def parses(monkeypatch):
    """Every parse of spec text in this test, by the module and function that asked for it."""
    calls: list[tuple[str, str]] = []
    for name in ("parse_items", "parse_layers"):
        real = getattr(parsing, name)

        def spy(*a, _real=real, **kw):
            calls.append(_caller())
            return _real(*a, **kw)

        monkeypatch.setattr(parsing, name, spy)
    row_spec.cache_clear()
    return calls


def _inside(calls: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [c for c in calls if not c[0].startswith(EDGES) and c not in EDGE_FUNCTIONS]


def test_a_search_parses_spec_text_only_at_its_edges(tmp_path, search_ecfg, parses):
    search, _, rows = run_search(tmp_path / "runs.db", search_ecfg, candidates=4, stages="1,2,3",
                                 stage2_candidates=2, stage3_candidates=2, rerank=1, rerank_seeds=1)
    assert len(rows) >= 6 and search.store.run(search.run_id)["status"] == "done"
    assert _inside(parses) == []
    assert any(c[0] == "exprsearch.search.store" for c in parses)  # the spy works: the store reader parsed


def test_evaluation_parses_nothing_and_lowers_each_layer_once(search_ecfg, parses, monkeypatch):
    ev = Evaluator(search_ecfg, log=quiet)
    spec = parse_spec("[linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2); linear2_1(tanh(linear2_1(x,wb1)),wb2)]")
    before = len(parses)
    lowered: list[str] = []
    real = sys.modules["exprsearch.compiler.lower"].lower

    def counting(e, *a, **kw):
        lowered.append(str(e))
        return real(e, *a, **kw)

    for module in ("exprsearch.compiler.student", "exprsearch.compiler.supernet"):  # every place a layer is lowered from
        monkeypatch.setattr(sys.modules[module], "lower", counting)
    r = ev.evaluate(spec)
    assert r.status == "ok"
    assert parses[before:] == []
    from exprsearch.lang.canon import canonicalize_spec
    assert sorted(lowered) == sorted(str(e) for e in canonicalize_spec(spec).layers)  # each layer once


def test_a_bug_in_a_loss_stops_the_search_and_stores_nothing(tmp_path, search_ecfg, monkeypatch):
    def typo(self, student, batch, teacher_out=None):
        return {}["loss"]  # a programming error, as a typo in a new loss would make

    monkeypatch.setattr(KDLoss, "forward", typo)
    store = Store(tmp_path / "runs.db")
    with pytest.raises(KeyError):
        run_search_in(store, search_ecfg)
    run = store.runs()[0]
    assert run["status"] == "failed" and "KeyError" in run["notes"]
    assert run["candidates"] == 0  # not a single failed row


def run_search_in(store: Store, ecfg) -> None:
    from conftest_search import scfg

    from exprsearch.search.search import Search
    Search(store, scfg(candidates=3), ecfg, log=quiet, progress=False).run()
