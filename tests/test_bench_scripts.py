"""The benchmark scripts' pure parts (their GPU runs are benchmarks, not tests)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
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
