"""vLLM's own OpenAI-compatible server, started on loopback for the `openai` engine's `vllm`
profile. vLLM lives in its own environment (it pins its own torch), so this runs only where
UNILLM_VLLM_PYTHON names that environment's python (e.g. the one scripts/test.d creates for
the vllm engine); otherwise the target is skipped with that reason.

CPU workarounds (shared/ENGINES.md): float32, VLLM_CPU_KVCACHE_SPACE=1, a short context, and
no compilation (-O0: its warm-up takes minutes on two cores). Start-up is still ~1-2 minutes.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from . import free_port, stop_process, wait_until_ready


def python() -> str | None:
    exe = os.environ.get("UNILLM_VLLM_PYTHON")
    return exe if exe and Path(exe).is_file() else None


class VLLMServers:
    """One server per model directory, started on first use, all stopped by `close`."""

    def __init__(self) -> None:
        self.running: dict[str, tuple[subprocess.Popen, str, Path]] = {}

    def base_url(self, model_dir: str, alias: str = "test-model") -> str:
        key = str(model_dir)
        if key not in self.running:
            port = free_port()
            log = Path(tempfile.mkstemp(prefix="vllm-server-", suffix=".log")[1])
            cache = Path(tempfile.gettempdir()) / "unillm-vllm-cache"
            env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CACHE_ROOT": str(cache),
                   "PYTHONUNBUFFERED": "1"}
            cmd = [python(), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                   "--served-model-name", alias, "--host", "127.0.0.1", "--port", str(port),
                   "--dtype", "float32", "--max-model-len", "1024", "--seed", "0",
                   "--enforce-eager", "-O0"]  # no torch.compile warm-up: minutes on 2 cores
            with open(log, "wb") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True, env=env)
            url = f"http://127.0.0.1:{port}"
            try:
                wait_until_ready(url + "/v1/models", 240, alive=lambda: proc.poll() is None)
            except Exception as exc:
                stop_process(proc)
                raise RuntimeError(f"vLLM's server did not start: {exc}\n"
                                   f"{log.read_text()[-3000:]}") from None
            self.running[key] = (proc, url, log)
        return self.running[key][1]

    def close(self) -> None:
        for proc, _, log in self.running.values():
            stop_process(proc)
            log.unlink(missing_ok=True)
        self.running.clear()

