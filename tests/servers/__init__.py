"""Real servers on loopback for the HTTP engines' tests: started by the tests, stopped after.

- `llama_cpp.py`: llama-cpp-python's own OpenAI-compatible server (a subprocess) on a GGUF
  converted from the test model.
- `tgi_standin.py`: a TGI-protocol server over unillm's transformers engine (no real TGI can
  run here: it needs Rust/CUDA builds or docker). It runs a real model; only the HTTP framing
  is TGI's.
- `vllm.py`: vLLM's own OpenAI-compatible server, where UNILLM_VLLM_PYTHON names an
  environment with vLLM (opt-in: vLLM needs its own environment).
- `faults.py`: a proxy in front of either that rate-limits, drops connections mid-stream or
  stalls, to test retries, errors and timeouts against real responses.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(url: str, timeout: float, alive=lambda: True) -> None:
    """Poll `url` until it answers 200; fail after `timeout` s or when `alive()` turns False."""
    import httpx

    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server behind {url} exited before it was ready")
        try:
            r = httpx.get(url, timeout=2.0)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}"
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout:g} s ({last})")


def stop_process(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """Terminate a server we started (SIGTERM, then SIGKILL after `grace` s). Servers are
    started with `start_new_session=True`, so the signal goes to their process group: workers
    they spawned (vLLM's engine core) go with them."""
    import os
    import signal

    def signal_group(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # the group whose leader is the process we started
        except ProcessLookupError:
            pass

    if proc.poll() is None:
        signal_group(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            signal_group(signal.SIGKILL)
            proc.wait(timeout=10)


class ServerProcesses:
    """One server process per model directory, started on first use (on a free port, waited
    for with a bounded timeout), all stopped by `close`. A subclass says how to start one."""

    title = "the server"
    ready_path = "/v1/models"
    ready_timeout = 90.0

    def __init__(self) -> None:
        self.running: dict[str, tuple[subprocess.Popen, str, Path]] = {}

    def command(self, model_dir: str, port: int, alias: str) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONUNBUFFERED": "1"}

    def base_url(self, model_dir: str, alias: str = "test-model") -> str:
        key = str(model_dir)
        if key not in self.running:
            port = free_port()
            cmd = self.command(key, port, alias)
            log = Path(tempfile.mkstemp(prefix="unillm-test-server-", suffix=".log")[1])
            with open(log, "wb") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True, env=self.env())
            url = f"http://127.0.0.1:{port}"
            try:
                wait_until_ready(url + self.ready_path, self.ready_timeout,
                                 alive=lambda: proc.poll() is None)
            except Exception as exc:
                stop_process(proc)
                tail = log.read_text()[-3000:]
                log.unlink(missing_ok=True)
                raise RuntimeError(f"{self.title} did not start: {exc}\n{tail}") from None
            self.running[key] = (proc, url, log)
        return self.running[key][1]

    def close(self) -> None:
        for proc, _, log in self.running.values():
            stop_process(proc)
            log.unlink(missing_ok=True)
        self.running.clear()


@contextmanager
def serve_in_thread(app, ready_path: str = "/", timeout: float = 30.0):
    """Run an ASGI app with uvicorn on a free loopback port in a daemon thread; yields its
    base URL and stops the server on exit."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base + ready_path, timeout, alive=thread.is_alive)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)
