"""llama.cpp's own OpenAI-compatible server (`llama-server`), started on loopback for the tests.

The binary comes from scripts/build-llama-server.sh (llama.cpp built from the sources in
llama-cpp-python's PyPI sdist), or from UNILLM_LLAMA_SERVER. The test model is converted to an
f32 GGUF by the llama.cpp plugin's converter and served with:

- ``--cache-type-k f32 --cache-type-v f32``: an f32 KV cache (the default f16 breaks near ties
  between logits differently from the float32 reference);
- ``--parallel 4``: four slots, so concurrent requests run at once;
- ``--threads 2``: the test machine's cores; ``--ctx-size`` 4 x 2048 (split between slots).
"""

from __future__ import annotations

import os
from pathlib import Path

from . import ServerProcesses

ROOT = Path(__file__).resolve().parents[2]


def binary() -> str | None:
    """The llama-server to run: UNILLM_LLAMA_SERVER, else the one the build script made."""
    explicit = os.environ.get("UNILLM_LLAMA_SERVER")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    built = sorted((ROOT / ".cache" / "llama-server").glob("*/llama-server"))
    return str(built[-1]) if built else None


class LlamaServers(ServerProcesses):
    title = "llama.cpp's llama-server"
    ready_path = "/health"

    def command(self, model_dir: str, port: int, alias: str) -> list[str]:
        from unillm_llamacpp.convert import cached_gguf

        return [
            binary(), "--model", str(cached_gguf(model_dir, "f32")), "--alias", alias,
            "--host", "127.0.0.1", "--port", str(port), "--threads", "2",
            "--parallel", "4", "--ctx-size", "8192",
            "--cache-type-k", "f32", "--cache-type-v", "f32", "--flash-attn", "off",
            "--log-disable",
        ]
