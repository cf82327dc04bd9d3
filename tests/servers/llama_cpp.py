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
import sys

from . import ServerProcesses

SERVER_MODULES = ("llama_cpp", "sse_starlette", "starlette_context", "pydantic_settings",
                  "fastapi", "uvicorn")


def missing_requirements() -> list[str]:
    """What this machine lacks to run the server (empty when it can)."""
    missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    if importlib.util.find_spec("unillm_llamacpp") is None:
        missing.append("unillm_llamacpp (the GGUF converter: pip install -e plugins/unillm-llamacpp)")
    return missing


class LlamaCppServers(ServerProcesses):
    title = "llama-cpp-python's server"

    def command(self, model_dir: str, port: int, alias: str) -> list[str]:
        from unillm_llamacpp.convert import cached_gguf

        return [
            sys.executable, "-m", "llama_cpp.server", "--model", str(cached_gguf(model_dir, "f32")),
            "--host", "127.0.0.1", "--port", str(port), "--model_alias", alias,
            "--interrupt_requests", "false", "--n_threads", "2", "--n_ctx", "2048",
            "--last_n_tokens_size", "2048", "--verbose", "false",
            "--type_k", "0", "--type_v", "0",  # an f32 KV cache (GGML_TYPE_F32 = 0)
        ]
