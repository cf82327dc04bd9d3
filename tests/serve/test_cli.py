"""`unillm serve` as a user runs it: a subprocess on loopback, stopped with SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import httpx
import pytest

from ..conftest import require_engine
from .conftest import serve_process


@pytest.fixture
def served(tiny_llama):
    require_engine("transformers")
    with serve_process(tiny_llama, "--engine-option", "dtype=float32",
                       "--shutdown-timeout", "60") as running:
        yield running


def test_sigterm_lets_the_in_flight_stream_finish_then_exits(served):
    proc, url = served
    body = {"model": "tiny", "prompt": "graceful", "max_tokens": 300, "temperature": 0,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    text, usage, done, signalled = "", None, False, False
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                continue
            payload = json.loads(line[6:])
            if payload["choices"]:
                text += payload["choices"][0]["text"]
            else:
                usage = payload["usage"]
            if not signalled:
                proc.send_signal(signal.SIGTERM)
                signalled = True
    assert done and usage["completion_tokens"] == 300
    # uvicorn re-raises the signal once it has shut down cleanly: exit status -SIGTERM
    assert proc.wait(120) in (0, -signal.SIGTERM)
    output = proc.stdout.read()
    assert "Application shutdown complete" in output
    assert "Uvicorn running on http://127.0.0.1:" in output  # loopback by default
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=2)


def test_serve_refuses_a_bad_engine_option_clearly(tiny_llama):
    out = subprocess.run(
        [sys.executable, "-m", "unillm.cli", "serve", "--engine", "transformers", "--model",
         tiny_llama, "--engine-option", "dtyp=float32"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "dtyp" in out.stderr and "dtype" in out.stderr


def test_serve_refuses_a_chat_template_that_does_not_parse(tiny_llama):
    out = subprocess.run(
        [sys.executable, "-m", "unillm.cli", "serve", "--engine", "transformers", "--model",
         tiny_llama, "--chat-template", "{% for m in messages %}"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "--chat-template" in out.stderr and "Jinja" in out.stderr
