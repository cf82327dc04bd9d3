"""llama-cpp-python's own OpenAI-compatible server, started on loopback for the tests.

The test model is converted to an f32 GGUF by the llama.cpp plugin's converter
(`unillm_llamacpp.convert.cached_gguf`, cached under ~/.cache/unillm/gguf), then served with
`python -m llama_cpp.server` on a free port:

- ``--interrupt_requests false``: by default the server cuts a running stream short whenever
  another request arrives, which would break concurrent requests;
- ``--last_n_tokens_size 2048``: its penalties look only this far back (default 64);
- ``--n_threads 2``: the test machine's cores;
- ``--type_k 0 --type_v 0``: an f32 KV cache (llama.cpp's default is f16, which breaks near
  ties between logits differently from the float32 reference).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from . import free_port, stop_process, wait_until_ready

SERVER_MODULES = ("llama_cpp", "sse_starlette", "starlette_context", "pydantic_settings",
                  "fastapi", "uvicorn")


def missing_requirements() -> list[str]:
    """What this machine lacks to run the server (empty when it can)."""
    missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    if importlib.util.find_spec("unillm_llamacpp") is None:
        missing.append("unillm_llamacpp (the GGUF converter: pip install -e plugins/unillm-llamacpp)")
    return missing


class LlamaCppServers:
    """One server per model directory, started on first use, all stopped by `close`."""

    def __init__(self) -> None:
        self.running: dict[str, tuple[subprocess.Popen, str, Path]] = {}

    def base_url(self, model_dir: str, alias: str = "test-model") -> str:
        key = str(model_dir)
        if key not in self.running:
            from unillm_llamacpp.convert import cached_gguf

            gguf = cached_gguf(model_dir, "f32")
            port = free_port()
            log = Path(tempfile.mkstemp(prefix="llama-cpp-server-", suffix=".log")[1])
            cmd = [
                sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
                "--host", "127.0.0.1", "--port", str(port), "--model_alias", alias,
                "--interrupt_requests", "false", "--n_threads", "2", "--n_ctx", "2048",
                "--last_n_tokens_size", "2048", "--verbose", "false",
                "--type_k", "0", "--type_v", "0",  # an f32 KV cache (GGML_TYPE_F32 = 0)
            ]
            with open(log, "wb") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
            url = f"http://127.0.0.1:{port}"
            try:
                wait_until_ready(url + "/v1/models", 90, alive=lambda: proc.poll() is None)
            except Exception as exc:
                stop_process(proc)
                raise RuntimeError(f"llama-cpp-python's server did not start: {exc}\n"
                                   f"{log.read_text()[-2000:]}") from None
            self.running[key] = (proc, url, log)
        return self.running[key][1]

    def close(self) -> None:
        for proc, _, log in self.running.values():
            stop_process(proc)
            log.unlink(missing_ok=True)
        self.running.clear()
