"""`bench throughput`: K prompts of exact lengths, at each batch size, every token counted."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

from unillm.bench import EngineSpec, run_throughput
from unillm.bench.prompts import LengthDist

from ..conftest import require_engine


def test_throughput_points_per_batch_size_with_exact_tokens(tmp_path):
    require_engine("transformers")
    out = subprocess.run(
        [sys.executable, "-m", "unillm.cli", "bench", "throughput", "-m", "test:llama-tiny",
         "-e", "transformers", "--num-prompts", "6", "--input-len", "24", "--input-spread", "0.5",
         "--output-len", "8", "--batch-sizes", "1,6", "--repeats", "1", "--out", str(tmp_path),
         "--name", "tp"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads((tmp_path / "tp.json").read_text())
    assert result["ok"] and result["parameters"]["batch_sizes"] == [1, 6]
    run = result["runs"][0]
    assert [p["batch_size"] for p in run["points"]] == [1, 6]
    for point in run["points"]:
        assert point["requests"] == 6 and point["mismatches"] == []
        (rep,) = point["repeats"]
        assert rep["output_tokens"] == 6 * 8
        assert rep["prompt_tokens"] == sum(r["prompt_tokens"] for r in point["records"])
        assert 12 <= min(r["prompt_tokens"] for r in point["records"])
        assert max(r["prompt_tokens"] for r in point["records"]) <= 36
        assert point["run"]["output_throughput"]["median"] == rep["output_throughput"]
        assert rep["total_throughput"] > rep["output_throughput"] > 0
    # the same seeded prompts at every batch size
    lens = [[r["prompt_tokens"] for r in p["records"]] for p in run["points"]]
    assert lens[0] == lens[1]
    assert (tmp_path / "tp-throughput.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader(open(tmp_path / "tp.csv")))
    assert [r["batch_size"] for r in rows] == ["1", "6"]


def test_mixed_output_lengths_are_checked_per_request():
    require_engine("transformers")
    result = run_throughput(
        [EngineSpec("transformers")], "test:llama-tiny", num_prompts=4,
        input_len=LengthDist(8), output_len=LengthDist(6, 0.5), batch_sizes=[4], repeats=1,
        isolate=False,
    )
    point = result["runs"][0]["points"][0]
    assert point["expected_output_tokens"] == "per request" and point["mismatches"] == []
    assert [r["output_tokens"] for r in point["records"]] == [
        r["expected_output_tokens"] for r in point["records"]]
