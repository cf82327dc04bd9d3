"""vLLM's own OpenAI-compatible server, started on loopback for the `openai` engine's `vllm`
profile. vLLM lives in its own environment (it pins its own torch), so this runs only where
UNILLM_VLLM_PYTHON names that environment's python (e.g. the one scripts/test.d creates for
the vllm engine); otherwise the target is skipped with that reason.

CPU workarounds (shared/ENGINES.md): float32, VLLM_CPU_KVCACHE_SPACE=1, a short context, and
no compilation (-O0: its warm-up takes minutes on two cores). Start-up is still ~1-2 minutes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import ServerProcesses


def python() -> str | None:
    exe = os.environ.get("UNILLM_VLLM_PYTHON")
    return exe if exe and Path(exe).is_file() else None


class VLLMServers(ServerProcesses):
    title = "vLLM's server"
    ready_timeout = 240.0

    def command(self, model_dir: str, port: int, alias: str) -> list[str]:
        return [python(), "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
                "--served-model-name", alias, "--host", "127.0.0.1", "--port", str(port),
                "--dtype", "float32", "--max-model-len", "1024", "--seed", "0",
                "--enforce-eager", "-O0"]  # no torch.compile warm-up: minutes on 2 cores

    def env(self) -> dict[str, str]:
        cache = Path(tempfile.gettempdir()) / "unillm-vllm-cache"
        return {**super().env(), "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CACHE_ROOT": str(cache)}
