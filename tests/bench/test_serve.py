"""`bench serve` against a real OpenAI-compatible server on loopback (see conftest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from unillm.bench.serve import SLO, run_serve

from ..conftest import require_engine


def test_concurrency_sweep_times_every_request(openai_server):
    require_engine("transformers")
    result = run_serve([openai_server], concurrency=[1, 3], num_prompts=4, max_tokens=6,
                       warmup=1, slo=SLO(ttft=600.0))
    assert result["ok"], result["runs"][0]["error"]
    run = result["runs"][0]
    assert run["model"] and run["engine_info"]["models"]
    assert [p["concurrency"] for p in run["points"]] == [1, 3]
    for point in run["points"]:
        assert (point["completed"], point["failed"], point["mismatches"]) == (4, 0, [])
        assert all(r["output_tokens"] == 6 for r in point["records"])
        assert all(r["ttft"] <= r["e2e"] for r in point["records"])
        assert point["run"]["output_tokens"] == 24 and point["run"]["output_throughput"] > 0
        assert point["metrics"]["itl"]["count"] >= 4  # gaps between streamed chunks
        assert point["good_requests"] == 4  # a 600 s TTFT limit: every request meets it


def test_serve_command_with_poisson_arrivals(openai_server, tmp_path):
    require_engine("transformers")
    out = subprocess.run(
        [sys.executable, "-m", "unillm.cli", "bench", "serve", "--url", openai_server,
         "--concurrency", "2", "--num-prompts", "3", "--max-tokens", "4", "--rate", "20",
         "--ttft-slo", "0.001", "--warmup", "0", "--out", str(tmp_path), "--name", "s"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads((tmp_path / "s.json").read_text())
    point = result["runs"][0]["points"][0]
    assert result["parameters"]["rate"] == 20.0 and point["rate"] == 20.0
    assert point["completed"] == 3
    assert point["good_requests"] == 0 and point["goodput"] == 0.0  # nobody meets a 1 µs TTFT
    for name in ("s.csv", "s-requests.csv", "s-throughput.png", "s-latency.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_an_unreachable_server_is_a_reported_error():
    result = run_serve(["http://127.0.0.1:9"], concurrency=[1], num_prompts=1, max_tokens=2,
                       timeout=5)
    run = result["runs"][0]
    assert run["status"] == "error" and "ConnectError" in run["error"]
    assert result["ok"] is False
