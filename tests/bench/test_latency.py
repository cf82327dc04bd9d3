"""`unillm bench latency` over every installed local engine, run as a user runs it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

import unillm
from unillm.backends.transformers import TransformersEngine
from unillm.bench import EngineSpec, run_latency

from ..conftest import require_engine

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cli(*args: str, cwd=None, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "unillm.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd)


def test_bench_latency_every_engine_exact_tokens_json_csv_png(tmp_path):
    require_engine("transformers")
    # what a fresh process sees (this one may hold engines that tests registered at run time)
    engines = json.loads(subprocess.run(
        [sys.executable, "-c", "import json; from unillm.bench.spec import installed_local_engines;"
         " print(json.dumps([s.engine for s in installed_local_engines()]))"],
        capture_output=True, text=True, check=True).stdout)
    # llama-quant: the smallest preset every engine runs, quantizers included (GPTQ's and
    # bitsandbytes' kernels refuse llama-tiny's 64-wide layers).
    out = _cli("bench", "latency", "--model", "test:llama-quant", "--max-tokens", "12",
               "--prompts", "2", "--repeats", "1", "--warmup", "1", "--name", "lat", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    # written under the current directory when --out is not given
    files = {p.name for p in tmp_path.iterdir()}
    assert {"lat.json", "lat.csv", "lat-requests.csv", "lat-tokens_per_s.png",
            "lat-latency.png"} <= files
    for png in ("lat-tokens_per_s.png", "lat-latency.png"):
        assert (tmp_path / png).read_bytes()[:8] == PNG_MAGIC

    result = json.loads((tmp_path / "lat.json").read_text())
    assert result["schema"] == "unillm.bench/1" and result["kind"] == "latency"
    assert result["ok"] is True
    assert result["parameters"]["max_tokens"] == 12
    assert result["parameters"]["sampling_params"]["ignore_eos"] is True
    assert result["machine"]["cpu_count"] >= 1
    assert result["versions"]["engines"]["transformers"]["packages"]["transformers"]
    assert [r["engine"] for r in result["runs"]] == engines
    for run in result["runs"]:
        assert run["status"] == "ok", run["error"]
        point = run["points"][0]
        assert point["requests"] == 2 and point["mismatches"] == []
        assert [r["output_tokens"] for r in point["records"]] == [12, 12]
        assert point["metrics"]["output_tokens"]["min"] == point["metrics"]["output_tokens"]["max"] == 12
        assert point["metrics"]["ttft"]["median"] <= point["metrics"]["e2e"]["median"]
        assert run["peak_memory"]["rss_bytes"] > 0
    rows = list(csv.DictReader(open(tmp_path / "lat.csv")))
    assert [r["engine"] for r in rows] == engines
    assert all(r["mismatches"] == "0" and float(r["tokens_per_s_median"]) > 0 for r in rows)
    requests = list(csv.DictReader(open(tmp_path / "lat-requests.csv")))
    assert len(requests) == 2 * len(engines)
    for engine in engines:
        assert engine in out.stdout  # the terminal table


class _StopsEarly(TransformersEngine):
    """A deliberately wrong engine: it produces one token fewer than asked."""

    def stream(self, request):
        request.params = request.params.replace(max_tokens=request.params.max_tokens - 1)
        return super().stream(request)


class _StopsEarlyPlugin:
    @unillm.hookimpl
    def unillm_register_engines(self, register):
        register("test-stops-early", _StopsEarly, requires=("torch", "transformers"))


def test_an_engine_that_stops_early_is_a_reported_mismatch_not_a_result():
    require_engine("transformers")
    if "test-stops-early" not in {i.name for i in unillm.engines()}:
        unillm.register_plugin(_StopsEarlyPlugin(), name="test-stops-early")
    # in-process: an engine registered at run time is invisible to a fresh worker process
    result = run_latency([EngineSpec("transformers"), EngineSpec("test-stops-early")],
                         "test:llama-tiny", max_tokens=6, prompts=2, warmup=0, repeats=1,
                         isolate=False)
    good, bad = result["runs"]
    assert good["status"] == "ok"
    assert bad["status"] == "mismatch" and result["ok"] is False
    assert [m["output_tokens"] for m in bad["points"][0]["mismatches"]] == [5, 5]


def test_a_failing_engine_is_recorded_and_the_others_still_run():
    require_engine("transformers")
    result = run_latency([EngineSpec("transformers", {"dtype": "float64"}), EngineSpec("transformers")],
                         "test:llama-tiny", max_tokens=4, prompts=1, warmup=0, repeats=1)
    failed, fine = result["runs"]
    assert failed["status"] == "error" and "dtype" in failed["error"]
    assert fine["status"] == "ok" and fine["points"][0]["requests"] == 1
    assert result["ok"] is False


def test_fixed_length_cannot_be_overridden():
    with pytest.raises(ValueError, match="ignore_eos"):
        run_latency([EngineSpec("transformers")], "test:llama-tiny", params={"ignore_eos": False})


def test_a_contestant_runs_in_the_interpreter_its_spec_names(tmp_path):
    """`python=` (an engine that needs its own environment, e.g. vLLM's CPU build): the worker
    is started with that interpreter. A wrapper stands in for the other environment's python:
    it leaves a mark, then runs this one."""
    require_engine("transformers")
    mark = tmp_path / "ran"
    other = tmp_path / "other-python"
    other.write_text(f'#!/bin/sh\ntouch "{mark}"\nexec "{sys.executable}" "$@"\n')
    other.chmod(0o755)
    missing = tmp_path / "no-such-python"
    result = run_latency(
        EngineSpec.parse_list(f"transformers:python={other}:label=other-env,"
                              f"transformers:python={missing}:label=missing-env"),
        "test:llama-tiny", max_tokens=4, prompts=1, warmup=0, repeats=1)
    ran, failed = result["runs"]
    assert mark.exists()
    assert ran["status"] == "ok" and ran["points"][0]["records"][0]["output_tokens"] == 4
    assert ran["engine_packages"]["transformers"]
    assert failed["status"] == "error" and str(missing) in failed["error"]
