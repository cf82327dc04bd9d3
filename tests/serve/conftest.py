"""A real server on 127.0.0.1 (uvicorn in a thread, on a port the OS picks) over the
transformers engine and the tiny Llama, and helpers that talk to it like clients do."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from ..conftest import require_module  # noqa: E402

require_module("fastapi", "unillm serve needs the serve extra", "serve")
require_module("uvicorn", "unillm serve needs the serve extra", "serve")

import uvicorn  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from unillm.serve import ServeConfig, create_app  # noqa: E402

from ..servers import free_port  # noqa: E402

MODEL = "tiny"


@dataclass
class LiveServer:
    url: str
    port: int
    app: object
    server: uvicorn.Server

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"


@contextlib.contextmanager
def running_server(gen, **config) -> Iterator[LiveServer]:
    """Serve `gen` until the block ends (the generator stays open: tests share it)."""
    app = create_app(gen, ServeConfig(served_model_name=MODEL, **config))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=20))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"uvicorn-{port}")
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", port, app, server)
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


def metric(server_url: str, name: str, labels: dict[str, str] | None = None,
           headers: dict[str, str] | None = None) -> float:
    """One sample's value from /metrics (0 if absent)."""
    import httpx

    text = httpx.get(f"{server_url}/metrics", headers=headers or {}, timeout=30).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in (labels or {}).items()):
                total += sample.value
    return total


def prompts(count: int) -> list[str]:
    """Distinct prompts of varied lengths (so batches are padded)."""
    words = ("the quick brown fox jumps over a lazy dog while def return class import "
             "yield lambda async await").split()
    return [f"{i}: " + " ".join(words[(i * 7 + k) % len(words)] for k in range(1 + i % 9))
            for i in range(count)]


@pytest.fixture(scope="module")
def server(hf_generator) -> Iterator[LiveServer]:
    with running_server(hf_generator, max_batch_size=64) as live:
        yield live


async def stream_completion(client, url: str, body: dict) -> dict:
    """One streaming completion the way an SSE client reads it: status, text per choice,
    finish reasons, and whether the stream ended with [DONE]."""
    import json

    out = {"status": None, "text": {}, "finish": {}, "done": False, "chunks": 0}
    async with client.stream("POST", url, json={**body, "stream": True}) as r:
        out["status"] = r.status_code
        if r.status_code != 200:
            await r.aread()
            out["error"] = r.text
            return out
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                out["done"] = True
                continue
            payload = json.loads(line[6:])
            for choice in payload.get("choices", []):
                i = choice["index"]
                piece = choice.get("text")
                if piece is None:
                    piece = choice.get("delta", {}).get("content") or ""
                out["text"][i] = out["text"].get(i, "") + piece
                out["chunks"] += 1
                if choice.get("finish_reason"):
                    out["finish"][i] = choice["finish_reason"]
    return out


@contextlib.contextmanager
def serve_process(model: str, *args: str, engine: str = "transformers",
                  timeout: float = 180) -> Iterator[tuple[subprocess.Popen, str]]:
    """`unillm serve` as a user runs it: a subprocess on a free loopback port, healthy before
    it is handed over, killed afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "unillm.cli", "serve", "--engine", engine, "--model", model,
         "--port", str(port), "--served-model-name", "tiny", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "UNILLM_API_KEY": ""},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"unillm serve exited: {proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"unillm serve did not become healthy in {timeout:.0f} s")
        time.sleep(0.2)
    try:
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """The fuzz test's request counts per engine, so a CI log shows how much was fuzzed."""
    import sys

    fuzz = sys.modules.get("tests.serve.test_fuzz")
    for engine, line in sorted(getattr(fuzz, "REPORT", {}).items()):
        terminalreporter.write_line(f"unillm serve fuzz [{engine}]: {line}")
