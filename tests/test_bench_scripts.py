"""The benchmark scripts' pure parts (their GPU runs are benchmarks, not tests)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_bias  # noqa: E402
import bench_fidelity  # noqa: E402
from _common import Log  # noqa: E402

CFG = {"tasks": ["MRPC", "RTE"], "task_steps": "MRPC=75,RTE=50", "data_dir": "/a/glue", "teacher": "/a/t",
       "cache_dir": "/a/c", "seed": 0}


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "fidelity.json"
    path.write_text(json.dumps({"benchmark": "bench_fidelity", "device": "old gpu", "torch": "old",
                                "proxy_config": CFG, "final_config": {**CFG, "task_steps": "MRPC=150,RTE=100"},
                                "names": ["standard", "random1"], "log": ["[0 s] old line"],
                                "proxy": {"0": [{"spec": "a"}, {"spec": "b"}], "1": [{"spec": "a"}, {"spec": "b"}]},
                                "final": {"0": [{"spec": "a"}, {"spec": "b"}]}, "seconds": {}}))
    return path


def test_fidelity_resume_keeps_passes_and_candidates_on_another_machine(tmp_path):
    here = {"data_dir": "/b/glue", "teacher": "/b/t", "cache_dir": "/b/c"}  # other paths: allowed
    fresh = {"device": "new gpu", "torch": "new", "proxy_config": {**CFG, **here},
             "final_config": {**CFG, **here, "task_steps": "MRPC=150,RTE=100"}}
    log = Log()
    r = bench_fidelity.resumed(_file(tmp_path), fresh, log)
    assert sorted(r["proxy"]) == [0, 1] and sorted(r["final"]) == [0]  # seeds are ints again: passes skipped
    assert r["names"] == ["standard", "random1"] and r["specs"] == ["a", "b"]  # an older file: from a pass
    assert (r["device"], r["torch"]) == ("new gpu", "new")
    assert r["log"] is log.lines and r["log"][0] == "[0 s] old line" and "resuming" in r["log"][-1]


def test_fidelity_resume_refuses_another_protocol(tmp_path):
    fresh = {"device": "gpu", "torch": "x", "proxy_config": {**CFG, "task_steps": "MRPC=150,RTE=100"},
             "final_config": {**CFG, "task_steps": "MRPC=150,RTE=100"}}
    with pytest.raises(SystemExit, match=r"another proxy protocol \(task_steps differ\)"):
        bench_fidelity.resumed(_file(tmp_path), fresh, Log())


def test_fidelity_resume_without_any_pass_says_so(tmp_path):
    path = _file(tmp_path)
    data = json.loads(path.read_text())
    data["proxy"], data["final"] = {}, {}
    path.write_text(json.dumps(data))
    fresh = {"device": "gpu", "torch": "x", "proxy_config": CFG, "final_config": data["final_config"]}
    with pytest.raises(SystemExit, match="no finished pass"):
        bench_fidelity.resumed(path, fresh, Log())


def test_fidelity_doctests():
    import doctest
    res = doctest.testmod(bench_fidelity, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted >= 4 and res.failed == 0


def _result(spec: str, mrpc: float, rte: float) -> dict:
    return {"spec": spec, "status": "ok", "params": 10, "metrics": {"MRPC": {"f1": mrpc}, "RTE": {"acc": rte}}}


def test_fidelity_report_recomputes_the_summary_without_training(tmp_path, capsys, monkeypatch):
    path = _file(tmp_path)
    data = json.loads(path.read_text())
    data["names"] = ["a", "b", "c"]
    data["proxy"] = {str(s): [_result("a", .8, .6), _result("b", .7 + s / 100, .5), _result("c", .6, .5)]
                     for s in range(2)}
    data["final"] = {str(s): [_result("a", .8, .6), _result("b", .6, .5), _result("c", .7, .55 - s * .2)]
                     for s in range(2)}
    path.write_text(json.dumps(data))
    monkeypatch.setattr(sys, "argv", ["bench_fidelity.py", "--report", "--out", str(path)])
    bench_fidelity.main()  # no --data-dir / --teacher needed
    s = json.loads(path.read_text())["summary"]
    assert s["n"] == 3 and s["kendall_tau_by_proxy_seeds"] == {"1": 1 / 3, "2": 1 / 3}  # JSON keys
    assert s["final_split_half_tau"] == pytest.approx(1 / 3)  # c falls below b in the second final seed
    assert set(s["pass_means"]) == {"proxy0", "proxy1", "final0", "final1"}
    assert "kendall_tau" in capsys.readouterr().out


def test_fidelity_report_of_a_missing_file_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no such result file"):
        bench_fidelity.report(tmp_path / "none.json")


def test_fidelity_reliability_leaves_out_seed_subsets_where_a_candidate_failed():
    def scores(runs, i):
        return [res[i]["s"] for res in runs.values() if res[i]["s"] is not None]

    proxy = {0: [{"s": 1.0}, {"s": None}, {"s": 3.0}], 1: [{"s": 1.0}, {"s": 2.0}, {"s": 3.0}]}
    final = {0: [{"s": 1.0}, {"s": 2.0}, {"s": 3.0}], 1: [{"s": 1.0}, {"s": 2.0}, {"s": 3.0}]}
    r = bench_fidelity.reliability(proxy, final, [0, 1, 2], scores, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert r["kendall_tau_by_proxy_seeds"] == {2: 1.0}  # seed 0 alone lacks candidate 1
    assert r["final_split_half_tau"] == 1.0 and r["pass_means"]["proxy0"] == 2.0


def test_bias_summary_doctests_and_candidates():
    import doctest
    res = doctest.testmod(bench_bias, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted >= 2 and res.failed == 0
    assert len(bench_bias.CANDIDATES) == 14 and {"geglu", "swiglu", "sqrelu", "reglu"} <= set(bench_bias.CANDIDATES)
    from exprsearch.lang.parsing import parse
    for name, text in bench_bias.CANDIDATES.items():  # every candidate is a valid expression
        assert str(parse(text, strict=True)) == text, name
