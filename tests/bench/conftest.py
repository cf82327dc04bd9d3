"""Fixtures of the bench tests: a real OpenAI-compatible server on loopback.

`openai_server` starts `unillm serve` when unillm's own server is installed (after the serve
branch is merged), else the minimal stand-in in openai_test_server.py. UNILLM_BENCH_SERVER=unillm
or =test forces one; UNILLM_BENCH_SERVER_CMD (a shell-style command with {model} and {port})
runs any other server, e.g. llama.cpp's or vLLM's.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(model: str, port: int) -> tuple[str, list[str]]:
    """(which server, the command that starts it)."""
    custom = os.environ.get("UNILLM_BENCH_SERVER_CMD")
    if custom:
        return "custom", shlex.split(custom.format(model=model, port=port))
    choice = os.environ.get("UNILLM_BENCH_SERVER")
    if choice is None:
        choice = "unillm" if importlib.util.find_spec("unillm.serve") else "test"
    if choice == "unillm":
        return "unillm serve", [sys.executable, "-m", "unillm.cli", "serve", "--engine", "transformers",
                                "--model", model, "--host", "127.0.0.1", "--port", str(port),
                                "-o", "dtype=float32"]
    return "openai_test_server.py", [sys.executable, str(HERE / "openai_test_server.py"), model, str(port)]


@pytest.fixture(scope="module")
def openai_server(tiny_llama, tmp_path_factory):
    """Base URL of a running OpenAI-compatible server for the tiny Llama; stopped afterwards."""
    port = _free_port()
    which, cmd = server_command(tiny_llama, port)
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{which} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{which} did not answer within 240 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
