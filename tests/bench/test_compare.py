"""`bench compare`: ratios b / a with the right direction for each metric."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest

from unillm.bench.compare import compare_results


def _latency_result(label: str, tok_s: float, ttft: float) -> dict:
    def s(v):
        return {"count": 1, "mean": v, "std": 0, "min": v, "max": v, "median": v,
                "p90": v, "p95": v, "p99": v, "p50": v}

    return {
        "schema": "unillm.bench/1", "kind": "latency", "runs": [{
            "label": label, "engine": "transformers", "options": {}, "status": "ok",
            "peak_memory": {"rss_bytes": 2**30},
            "points": [{"batch_size": 1, "requests": 1, "mismatches": [],
                        "metrics": {"tokens_per_s": s(tok_s), "ttft": s(ttft), "tpot": None,
                                    "itl": None, "e2e": s(1.0)}}],
        }],
    }


def test_ratios_and_verdicts_follow_each_metrics_direction():
    a = _latency_result("x", tok_s=100.0, ttft=0.010)
    b = _latency_result("x", tok_s=150.0, ttft=0.020)
    rows = {r["metric"]: r for r in compare_results(a, b)}
    assert rows["tokens_per_s"]["ratio"] == pytest.approx(1.5)
    assert rows["tokens_per_s"]["verdict"] == "b better"       # higher is better
    assert rows["ttft"]["ratio"] == pytest.approx(2.0)
    assert rows["ttft"]["verdict"] == "a better"                # lower is better
    assert rows["e2e"]["verdict"] == "same" and rows["peak_rss"]["verdict"] == "same"
    assert "tpot" not in rows                                   # not observed: no row


def test_one_result_against_a_baseline_run():
    a = _latency_result("base", 100.0, 0.01)
    other = copy.deepcopy(a["runs"][0])
    other["label"] = "fast"
    other["points"][0]["metrics"]["tokens_per_s"]["median"] = 300.0
    a["runs"].append(other)
    rows = compare_results(a, baseline="base")
    tok = next(r for r in rows if r["metric"] == "tokens_per_s")
    assert (tok["a"], tok["b"], tok["ratio"]) == ("base", "fast", pytest.approx(3.0))
    with pytest.raises(ValueError, match="no run labelled"):
        compare_results(a, baseline="nope")


def test_compare_refuses_different_kinds():
    a = _latency_result("x", 1.0, 1.0)
    b = dict(a, kind="throughput")
    with pytest.raises(ValueError, match="cannot compare"):
        compare_results(a, b)


def test_compare_command_prints_ratios(tmp_path):
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(_latency_result("x", 100.0, 0.01)))
    pb.write_text(json.dumps(_latency_result("x", 120.0, 0.01)))
    out = subprocess.run([sys.executable, "-m", "unillm.cli", "bench", "compare", str(pa), str(pb),
                          "--json", str(tmp_path / "rows.json")], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "1.200" in out.stdout and "b better" in out.stdout
    assert json.loads((tmp_path / "rows.json").read_text())[0]["metric"] == "tokens_per_s"
