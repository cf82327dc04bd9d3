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


def python_m_unillm(*args: str, env: dict[str, str] | None = None,
                    timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unillm", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "80", **(env or {})})


def test_python_m_unillm_and_version():
    import unillm

    out = python_m_unillm("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"unillm {unillm.__version__}"
    assert "demo" in python_m_unillm("--help").stdout


def test_help_shows_every_option_name_whole_at_80_columns():
    out = python_m_unillm("serve", "--help")
    assert out.returncode == 0, out.stderr
    for name in ("--served-model-name", "--max-batch-wait-ms", "--max-concurrency",
                 "--trust-remote-code", "--shutdown-timeout"):
        assert name in out.stdout, name
    assert "…" not in out.stdout


def test_a_mistyped_test_preset_is_a_one_line_error_with_the_fix():
    out = python_m_unillm("generate", "-e", "transformers", "-m", "test:llama-tinyy", "hi")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "did you mean test:llama-tiny?" in lines[0], out.stderr


def test_a_missing_model_path_says_so_and_leaves_nothing_behind(tmp_path):
    """No hub message ("Repo id must be ...") for a path, and CTranslate2 neither starts a
    conversion nor leaves a lock in the cache."""
    cache = tmp_path / "cache"
    for engine in ("transformers", "ctranslate2"):
        if not any(e.name == engine and e.status == "installed" for e in _engines()):
            continue
        out = python_m_unillm("generate", "-e", engine, "-m", "/no/such/model", "hi",
                              env={"UNILLM_CACHE": str(cache)})
        assert out.returncode == 2, (engine, out.stderr)
        assert "'/no/such/model'" in out.stderr and "does not exist" in out.stderr, out.stderr
        assert "Repo id" not in out.stderr and "converting" not in out.stderr
        assert "Traceback" not in out.stderr
    assert not cache.exists() or not any(cache.rglob("*")), list(cache.rglob("*"))


def test_install_hints_in_errors_keep_their_brackets():
    """rich read "[vllm]" as markup and printed `pip install "unillm"`."""
    missing = [e for e in _engines() if e.status == "missing" and "[" in (e.install_hint or "")]
    if not missing:
        import pytest

        pytest.skip("every engine with an extra in its install hint is installed here")
    out = python_m_unillm("generate", "-e", missing[0].name, "-m", "x", "hi")
    assert out.returncode == 2
    assert missing[0].install_hint in " ".join(out.stderr.split()), out.stderr


def test_generate_with_n_prints_every_sample():
    out = python_m_unillm("generate", "-e", "transformers", "-m", "test:llama-tiny", "-p", "n=3",
                          "-p", "max_tokens=4", "-p", "seed=1", "-p", "ignore_eos=true",
                          "-o", "dtype=float32", "Hello")
    assert out.returncode == 0, out.stderr
    for i in (1, 2, 3):
        assert f"--- sample {i} of 3 ---" in out.stderr
    texts = out.stdout.rstrip("\n").split("\n")
    assert len(texts) == 3 and all(t.strip() for t in texts), out.stdout
    assert len(re.findall(r"output_tokens\s+4\b", out.stderr)) == 3


def _engines():
    import unillm

    return unillm.engines()
