"""Fixtures of the bench tests: a real OpenAI-compatible server on loopback.

`openai_server` starts `unillm serve` (transformers, float32) on the tiny Llama.
UNILLM_BENCH_SERVER_CMD (a shell-style command with {model} and {port}) runs any other server
instead, e.g. llama.cpp's or vLLM's, so the serve bench can be checked against it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from ..servers import free_port, stop_process, wait_until_ready


def server_command(model: str, port: int) -> tuple[str, list[str]]:
    """(which server, the command that starts it)."""
    custom = os.environ.get("UNILLM_BENCH_SERVER_CMD")
    if custom:
        return "custom", shlex.split(custom.format(model=model, port=port))
    return "unillm serve", [sys.executable, "-m", "unillm.cli", "serve", "--engine", "transformers",
                            "--model", model, "--host", "127.0.0.1", "--port", str(port),
                            "-o", "dtype=float32"]


@pytest.fixture(scope="module")
def openai_server(tiny_llama, tmp_path_factory):
    """Base URL of a running OpenAI-compatible server for the tiny Llama; stopped afterwards."""
    port = free_port()
    which, cmd = server_command(tiny_llama, port)
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_ready(url + "/v1/models", 240, alive=lambda: proc.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"{which} did not start: {exc}\n{log.read_text()[-3000:]}")
        yield url
    finally:
        stop_process(proc, grace=30)
