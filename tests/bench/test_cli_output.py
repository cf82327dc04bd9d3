"""What a user of `unillm bench` / `unillm tune` sees before and while the work runs: a missing
optional package is one line naming the install command (before any work), the default
latency workload is a quick one (--full: the recorded one), progress shows as plain lines
when piped, and tables read at 80 columns."""

from __future__ import annotations

import inspect
import io
import json
import os
import subprocess
import sys

import pytest
from rich.console import Console

from unillm.bench.deps import INSTALL, MissingDependency
from unillm.bench.latency import FULL_WORKLOAD, QUICK_WORKLOAD, run_latency
from unillm.cli.bench import latency_rows, latency_workload
from unillm.cli.progress import PlainReporter, show_table

from ..conftest import require_engine

LATENCY_COLUMNS = ["engine", "status", "tokens", "tok/s p50", "TTFT p50 ms", "TTFT p99 ms",
                   "TPOT p50 ms", "TPOT p99 ms", "ITL p99 ms", "e2e p50 ms", "e2e p99 ms",
                   "peak RSS MiB", "load s"]


def _cli_without(module: str, *args: str, cwd, columns: int = 80) -> subprocess.CompletedProcess:
    """`unillm ARGS` in a fresh process where `module` cannot be imported."""
    code = ("import runpy, sys\n"
            f"sys.modules[{module!r}] = None  # import {module} now raises ModuleNotFoundError\n"
            f"sys.argv = ['unillm', *{list(args)!r}]\n"
            "runpy.run_module('unillm.cli', run_name='__main__', alter_sys=True)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={**os.environ, "COLUMNS": str(columns)})


@pytest.mark.parametrize("args", [
    ["bench", "latency", "-m", "test:llama-tiny", "-e", "transformers"],
    ["bench", "throughput", "-m", "test:llama-tiny", "-e", "transformers"],
    ["bench", "serve", "--url", "http://127.0.0.1:9"],
    ["tune", "-e", "transformers", "-m", "test:llama-tiny", "--trials", "1"],
], ids=["latency", "throughput", "serve", "tune"])
def test_no_matplotlib_is_one_line_naming_the_install_before_any_work(tmp_path, args):
    out = _cli_without("matplotlib", *args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2, out.stdout + out.stderr
    assert len(lines) == 1, out.stderr  # no traceback, no progress: nothing ran
    assert "matplotlib" in lines[0] and INSTALL in lines[0]  # [bench] survives, not markup
    assert "--no-plots" in lines[0]
    assert not (tmp_path / "out").exists() and out.stdout == ""


def test_tune_without_optuna_is_one_line_naming_the_install(tmp_path):
    out = _cli_without("optuna", "tune", "-e", "transformers", "-m", "test:llama-tiny",
                       "--no-plots", "--out", str(tmp_path / "out"), cwd=tmp_path)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2, out.stdout + out.stderr
    assert len(lines) == 1 and "optuna" in lines[0] and INSTALL in lines[0], out.stderr
    assert not (tmp_path / "out").exists()


def test_run_tune_without_optuna_raises_before_measuring(monkeypatch):
    from unillm.bench import tune

    def no_worker(*a, **k):
        raise AssertionError("a worker was started")

    monkeypatch.setitem(sys.modules, "optuna", None)
    monkeypatch.setattr(tune, "Worker", no_worker)
    with pytest.raises(MissingDependency, match=r"optuna is not installed .*unillm\[bench\]"):
        tune.run_tune("transformers", "test:llama-tiny", trials=1)


def test_quick_default_workload_and_full_recorded_one():
    assert latency_workload(False) == QUICK_WORKLOAD
    assert latency_workload(True) == FULL_WORKLOAD
    # the recorded workload is also the library's defaults
    defaults = inspect.signature(run_latency).parameters
    assert {k: defaults[k].default for k in FULL_WORKLOAD} == FULL_WORKLOAD
    # each flag given wins over either preset
    assert latency_workload(True, prompts=8, warmup=1) == {**FULL_WORKLOAD, "prompts": 8, "warmup": 1}
    assert latency_workload(False, max_tokens=200) == {**QUICK_WORKLOAD, "max_tokens": 200}
    # the quick one is a fraction of the work (requests x tokens) of the full one
    def work(w):
        return ((w["prompts"] or 16) * w["repeats"] + w["warmup"]) * w["max_tokens"]
    assert work(QUICK_WORKLOAD) * 10 < work(FULL_WORKLOAD)


def test_piped_latency_prints_a_line_per_engine_and_pass_and_fits_80_columns(tmp_path):
    require_engine("transformers")
    out = subprocess.run(
        [sys.executable, "-m", "unillm.cli", "bench", "latency", "-m", "test:llama-tiny",
         "-e", "transformers", "--max-tokens", "8", "--no-plots", "--name", "q"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    passes = [line for line in out.stderr.splitlines() if "transformers: pass" in line]
    rounds = QUICK_WORKLOAD["repeats"]
    assert [p.split("transformers: ")[1].split(" done")[0] for p in passes] == [
        f"pass {k}/{rounds}" for k in range(1, rounds + 1)]
    assert "\x1b[" not in out.stdout + out.stderr  # plain text, no bars or colours
    assert max(len(line) for line in out.stdout.splitlines()) <= 80
    for column in LATENCY_COLUMNS[1:]:
        assert column in out.stdout, column  # every heading whole, none folded
    p = json.loads((tmp_path / "q.json").read_text())["parameters"]
    assert (p["prompts"], p["repeats"], p["warmup"], p["max_tokens"]) == (
        QUICK_WORKLOAD["prompts"], QUICK_WORKLOAD["repeats"], QUICK_WORKLOAD["warmup"], 8)


def _summary(value: float) -> dict[str, float]:
    return {"median": value, "p99": value * 1.5, "mean": value}


def _result(labels: list[str]) -> dict:
    runs = []
    for i, label in enumerate(labels):
        metrics = {"tokens_per_s": _summary(1234.5 + i), "ttft": _summary(0.0456),
                   "tpot": _summary(0.01234), "itl": _summary(0.0111), "e2e": _summary(2.5625)}
        runs.append({"label": label, "status": "ok", "load_s": 41.2,
                     "peak_memory": {"rss_bytes": 1080 * 2**20},
                     "points": [{"requests": 16, "expected_output_tokens": 200, "mismatches": [],
                                 "metrics": metrics}]})
    return {"parameters": {"max_tokens": 200, "prompts": 8, "repeats": 2, "api": "stream"},
            "runs": runs}


ENGINES = ["transformers", "ctranslate2", "llamacpp", "vllm", "bnb", "gptq", "torchao"]


@pytest.mark.parametrize("count", [1, 3, 7])
def test_latency_table_is_readable_at_80_columns(monkeypatch, count):
    monkeypatch.setenv("COLUMNS", "80")
    buffer = io.StringIO()
    console = Console(file=buffer, color_system=None)
    assert console.width == 80
    title, columns, rows = latency_rows(_result(ENGINES[:count]))
    assert columns == LATENCY_COLUMNS
    show_table(title, columns, rows, console=console)
    text = buffer.getvalue()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    for word in [*LATENCY_COLUMNS[1:], *ENGINES[:count], "1,234.5", "45.6", "68.4", "12.34",
                 "18.51", "2,562.5", "1,080", "41.2", "✓ 16×200"]:
        assert any(word in line for line in lines), (word, text)  # whole, on one line
    assert title in text.replace("\n", " ") or title in text


def test_a_wide_terminal_keeps_one_row_per_engine(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    buffer = io.StringIO()
    console = Console(file=buffer, color_system=None)
    show_table(*latency_rows(_result(ENGINES[:3])), console=console)
    lines = buffer.getvalue().splitlines()
    header = next(line for line in lines if "TTFT p50 ms" in line)
    assert all(c in header for c in LATENCY_COLUMNS)
    assert len([line for line in lines if "transformers" in line or "llamacpp" in line]) == 2


def test_plain_reporter_lines():
    stream = io.StringIO()
    rep = PlainReporter(stream)
    advance = rep.task("transformers", 9)
    rep.message("transformers: loading m")
    advance(5)
    rep.round_done("transformers", 1, 2)
    advance(4)
    rep.round_done("transformers", 2, 2)
    level = rep.task("server c=8", 16)  # no rounds: one line when it completes
    level(15)
    level(1)
    lines = [line.split("] ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines == ["transformers: loading m", "transformers: pass 1/2 done (5/9 requests)",
                     "transformers: pass 2/2 done (9/9 requests)", "server c=8: done (16/16)"]
