"""`unillm bench quality`: perplexity, agreement with the reference and speed per engine, in
the bench's result schema and files, with the speed-against-quality plot."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from unillm.bench import EngineSpec, write_outputs
from unillm.bench.quality import REFERENCE, run_quality
from unillm.bench.quality_outputs import pareto, pareto_labels, quality_rows

from ..conftest import require_engine

pytest.importorskip("matplotlib", reason="bench plots need the bench extra")


@pytest.fixture(scope="module")
def result():
    require_engine("transformers")
    require_engine("ctranslate2")
    specs = [EngineSpec("ctranslate2", {"compute_type": "float32"}, label="ct2-float32"),
             EngineSpec("ctranslate2", {"compute_type": "int8"}, label="ct2-int8")]
    return run_quality(specs, "test:llama-tiny", prompts=2, max_tokens=8, isolate=False)


def by_label(result):
    return {run["label"]: run for run in result["runs"]}


def test_the_reference_runs_first_and_matches_itself(result):
    assert result["kind"] == "quality" and result["ok"]
    ref = result["runs"][0]
    assert ref["label"] == REFERENCE.label and ref["reference"]
    q = ref["points"][0]["quality"]
    assert q["perplexity_gap"] == 0.0 and q["agreement"] == 1.0 and q["exact"] == 1.0
    assert q["mean_abs_logprob_diff"] == 0.0
    assert q["perplexity"] > 1 and q["scored_tokens"] > 100


def test_a_float32_engine_is_at_the_reference_and_int8_is_measured(result):
    runs = by_label(result)
    f32 = runs["ct2-float32"]["points"][0]["quality"]
    assert abs(f32["perplexity_gap"]) < 1e-4 and f32["mean_abs_logprob_diff"] < 1e-4
    assert f32["agreement"] == 1.0 and f32["exact"] == 1.0
    int8 = runs["ct2-int8"]["points"][0]["quality"]
    assert int8["perplexity_gap"] is not None and int8["mean_abs_logprob_diff"] > 1e-4
    assert 0.0 <= int8["agreement"] <= 1.0
    for run in result["runs"]:  # speed from the latency job: exactly max_tokens each
        point = run["points"][0]
        assert point["requests"] == 2 and not point["mismatches"]
        assert point["metrics"]["tokens_per_s"]["median"] > 0


def test_files_table_and_plot(result, tmp_path):
    files = write_outputs(result, tmp_path, "q")
    assert {"json", "csv", "requests_csv", "plot_quality"} <= set(files)
    rows = list(csv.DictReader(open(files["csv"])))
    assert [r["label"] for r in rows] == [run["label"] for run in result["runs"]]
    assert {"perplexity", "perplexity_gap", "agreement", "pareto", "reference"} <= set(rows[0])
    assert json.loads(files["json"].read_text())["kind"] == "quality"
    assert files["plot_quality"].stat().st_size > 10_000
    assert any(row["pareto"] for row in quality_rows(result))
    assert pareto_labels(result)


def test_the_pareto_front():
    items = [("slow-good", 1.0, 10.0), ("fast-bad", 5.0, 20.0), ("dominated", 0.5, 30.0),
             ("fast-good", 5.0, 10.0), ("mid", 3.0, 10.0)]
    assert [p[0] for p in pareto(items)] == ["fast-good"]
    items = items[:3]
    assert [p[0] for p in pareto(items)] == ["slow-good", "fast-bad"]


def test_the_command_line(tmp_path):
    require_engine("ctranslate2")
    pytest.importorskip("lm_eval", reason="--tasks needs lm-eval (pip install 'unillm[eval]')")
    run = subprocess.run(
        [sys.executable, "-m", "unillm", "bench", "quality", "--model", "test:llama-tiny",
         "--engines", "ctranslate2:compute_type=int8", "--prompts", "1", "--max-tokens", "4",
         "--in-process", "--out", str(tmp_path), "--name", "q", "--tasks", "unillm_mc",
         "--task-limit", "4"],
        capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    data = json.loads((tmp_path / "q.json").read_text())
    assert [r["label"] for r in data["runs"]] == ["transformers-float32",
                                                  "ctranslate2:compute_type=int8"]
    tasks = data["runs"][1]["points"][0]["quality"]["tasks"]
    assert "acc,none" in tasks["unillm_mc"]
    assert (tmp_path / "q-quality.png").is_file()
    assert "perplexity" in run.stdout and "unillm_mc" in run.stdout
