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


def test_arrival_gaps_follow_vllms_gamma_burstiness():
    """Gaps have mean 1/rate whatever the burstiness; their coefficient of variation is
    1/sqrt(burstiness) (1 = Poisson: exponential gaps); no rate means all at once."""
    import random
    import statistics

    from unillm.bench.serve import arrival_gaps

    assert arrival_gaps(4, None, 1.0, random.Random(0)) == [0.0, 0.0, 0.0]
    for burstiness in (0.25, 1.0, 4.0):
        gaps = arrival_gaps(40_001, 8.0, burstiness, random.Random(1))
        assert len(gaps) == 40_000
        mean = statistics.fmean(gaps)
        assert abs(mean - 1 / 8) < 0.01
        cv = statistics.pstdev(gaps) / mean
        assert abs(cv - burstiness ** -0.5) < 0.05 * burstiness ** -0.5


def test_saturation_is_where_the_served_rate_falls_behind_the_offered_one():
    from unillm.bench.serve import saturation

    def point(offered, served):
        return {"offered_rate": offered, "run": {"request_throughput": served}}

    points = [point(8, 7.9), point(2, 2.0), point(16, 15.0), point(32, 20.0), point(64, 21.0)]
    assert saturation(points) == {"saturated_at": 32, "highest_kept_up": 16, "max_served": 21.0,
                                  "keep_up": 0.9}
    # judged against the rate the requests really arrived at, when it is known
    late = {**point(8, 6.0), "arrival_rate": 6.2}
    assert saturation([late])["saturated_at"] is None
    assert saturation([point(1, 1.0)])["saturated_at"] is None
    assert saturation([{"concurrency": 4}]) is None


def test_rate_sweep_with_bursty_arrivals_plots_latency_against_load(openai_server, tmp_path):
    require_engine("transformers")
    out = subprocess.run(
        [sys.executable, "-m", "unillm.cli", "bench", "serve", "--url", openai_server,
         "--rates", "1,2000", "--burstiness", "0.5", "--concurrency", "64", "--num-prompts",
         "10", "--max-tokens", "4", "--warmup", "0", "--out", str(tmp_path), "--name", "r"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["parameters"]["rates"] == [1.0, 2000.0]
    assert result["parameters"]["burstiness"] == 0.5
    run = result["runs"][0]
    assert [p["offered_rate"] for p in run["points"]] == [1.0, 2000.0]
    assert all(p["completed"] == 10 and p["failed"] == 0 for p in run["points"])
    # ~9 s of arrivals at 1 req/s are served as they come (the last request's own time is the
    # only lag); 2,000 req/s are not, by any server here
    assert run["saturation"]["saturated_at"] == 2000.0
    assert "saturates at 2000 req/s" in out.stdout
    assert (tmp_path / "r-load.png").stat().st_size > 0


def test_rates_and_rate_together_are_refused():
    import pytest

    with pytest.raises(ValueError, match="not both"):
        run_serve(["http://127.0.0.1:9"], rate=2.0, rates=[1.0, 2.0])
    with pytest.raises(ValueError, match="burstiness"):
        run_serve(["http://127.0.0.1:9"], rate=2.0, burstiness=0.0)
