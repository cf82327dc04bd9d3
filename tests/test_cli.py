"""The `unillm` command, run as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

UNILLM = [sys.executable, "-m", "unillm.cli"]


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*UNILLM, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_engines_lists_statuses_and_install_hints():
    out = run("engines")
    assert out.returncode == 0, out.stderr
    assert "transformers" in out.stdout and "installed" in out.stdout
    if "missing" in out.stdout:
        assert "install:" in out.stdout


def test_generate_streams_text_and_prints_timing():
    out = run("generate", "--engine", "transformers", "--model", "test:llama-tiny",
              "-p", "max_tokens=8", "-p", "temperature=0", "-p", "ignore_eos=true",
              "-o", "dtype=float32", "Hello")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    for label in ("ttft", "tpot", "e2e", "output_tokens"):
        assert label in out.stderr
    assert re.search(r"output_tokens\s+8\b", out.stderr), out.stderr


def test_generate_reports_bad_parameters_without_a_traceback():
    out = run("generate", "-e", "transformers", "-m", "test:llama-tiny", "-p", "temperature=-1", "x")
    assert out.returncode == 2
    assert "temperature" in out.stderr and "Traceback" not in out.stderr


def test_build_model_prints_a_directory():
    out = run("build-model", "gpt2-tiny")
    assert out.returncode == 0, out.stderr
    path = out.stdout.strip().splitlines()[-1]
    assert os.path.exists(os.path.join(path, "config.json"))


def test_demo_runs_every_installed_local_engine_and_exact_ones_match():
    """The README's first command ends in `unillm demo`: every installed engine that runs a
    local model gets a row with figures (no error row), and the engines run in float32 produce
    transformers' greedy tokens."""
    names = run("engines").stdout
    out = run("demo", timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^│ ([a-z0-9_-]+)\s+│(.*)$", out.stdout, re.M)}
    local = subprocess.run(
        [sys.executable, "-c", "from unillm.bench.spec import installed_local_engines;"
         " print(' '.join(s.engine for s in installed_local_engines()))"],
        capture_output=True, text=True, check=True).stdout.split()
    assert set(local) <= set(rows), f"no row for {set(local) - set(rows)}"
    assert rows.get("transformers") and re.search(r"│\s+-\s+│$", rows["transformers"].rstrip())
    for engine in ("ctranslate2", "llamacpp", "vllm"):
        if re.search(rf"^│ {engine}\s+│ installed", names, re.M):
            assert re.search(r"│\s+yes\s+│$", rows[engine].rstrip()), (engine, rows[engine])
    assert "Error" not in out.stdout
