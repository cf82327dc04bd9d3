"""What unillm's conformance run checks: one `Target` (unillm.testing.conformance.Target, whose
docstring says what each field means) per engine configuration.

Every engine in the registry is a target, whether or not it is listed here: an engine with no
entry runs with its default options and must match the float32 reference exactly. List an
engine here to give it options, mark a quantized configuration inexact (with the reason), or
limit the architectures it is asked to load. Engines unillm knows of but that are not installed
appear too, and are reported as skipped with their install command.

Restrict a run with UNILLM_TARGETS=id1,id2 (e.g. in the vLLM environment: UNILLM_TARGETS=vllm).
"""

from __future__ import annotations

import os

import unillm
from unillm.testing.conformance import Target

QUANTIZED = (
    "weights rounded to 4 or 8 bits: on this random-weight model greedy text leaves the float32 "
    "reference within a few tokens (tests/engines/test_quantization.py bounds the logit error)"
)


BNB_KERNELS = (
    "bitsandbytes' CPU kernels round a row differently with the batch around it (the 4-bit "
    "kernel tiles its matmul by the number of rows; LLM.int8() picks outlier columns over the "
    "whole batch), so on a random model greedy text can change with the batch"
)


def _quantized(id: str, engine: str, method: str, batch_variance: str = "") -> Target:
    """A quantized configuration, on the preset whose linear layers every method quantizes
    (quantizers skip or reject the tiny presets' 64-wide layers)."""
    return Target(id, engine, {"dtype": "float32", "quantization": method}, exact=False,
                  inexact_reason=QUANTIZED, presets=("llama-quant",), preset="llama-quant",
                  batch_variance=batch_variance)


CONFIGURED: list[Target] = [
    Target("transformers", "transformers", {"dtype": "float32"}),
    Target("transformers-minimal", "transformers-minimal", {"dtype": "float32"}),
    Target("ctranslate2", "ctranslate2", {"compute_type": "float32"}),
    # The same engine through its per-token callback in batch calls too (timing on).
    Target("ctranslate2-timed", "ctranslate2", {"compute_type": "float32", "batch_token_times": True},
           presets=("llama-tiny",)),
    Target("ctranslate2-int8", "ctranslate2", {"compute_type": "int8"}, exact=False,
           inexact_reason="int8 weights: greedy ids may differ from the float32 reference",
           presets=("llama-tiny",)),
    # float32 for exact parity; eager mode because torch.compile on CPU adds ~75 s to the first
    # load of each model (the compiled path is the same vLLM engine, sampling included).
    Target("vllm", "vllm", {"dtype": "float32", "enforce_eager": True}),
    # The same engine behind 2 Ray replicas (unillm.distributed): every semantic must survive
    # the trip through the actors. Small CPU reservations so it fits beside other Ray tests.
    Target("transformers-replicas", "transformers",
           {"dtype": "float32", "replicas": 2, "num_cpus": 0.25}, presets=("llama-tiny",)),
    # f32 weights and an f32 KV cache (llama.cpp's default cache is f16): exact. The plugin's
    # own tests run the kit on the same two configurations (plugins/unillm-llamacpp/tests).
    Target("llamacpp", "llamacpp", {"quantization": "f32", "kv_cache_type": "f32"}),
    Target("llamacpp-q8_0", "llamacpp", {"quantization": "q8_0"}, exact=False,
           inexact_reason="8-bit weights and an f16 KV cache change near-tied argmaxes",
           presets=("llama-tiny",)),
    _quantized("bnb", "bnb", "nf4", BNB_KERNELS),
    _quantized("bnb-fp4", "bnb", "fp4", BNB_KERNELS),
    _quantized("bnb-int8", "bnb", "int8", BNB_KERNELS),
    _quantized("gptq", "gptq", "gptq"),  # calibrated on unillm's default texts
    _quantized("torchao", "torchao", "torchao-int8"),
    # HTTP: llama-cpp-python's own OpenAI-compatible server on an f32 GGUF of each test model
    # (converted by the llama.cpp plugin's converter), with an f32 KV cache. Not qwen2-tiny:
    # there the 32nd greedy token of one prompt is half a UTF-8 character, and llama-cpp-python
    # 0.3.36 then generates past max_tokens to complete it (33 tokens for 32; see
    # docs/engines/http.md), which a text engine cannot undo.
    Target("openai-llama-cpp-python", "openai", server="llama_cpp_server",
           presets=("llama-tiny", "gpt2-tiny")),
    # llama.cpp's own server (llama-server, built by scripts/build-llama-server.sh from the
    # same llama.cpp sources), on the same f32 GGUFs with an f32 KV cache.
    Target("openai-llama-server", "openai", server="llama_server"),
    # vLLM's own server: runs where UNILLM_VLLM_PYTHON names an environment with vLLM (CI sets it
    # to .venv-vllm's python; scripts/test.d/vllm.sh).
    Target("openai-vllm", "openai", server="vllm_server"),
]


def all_targets() -> list[Target]:
    configured = {t.engine for t in CONFIGURED}
    targets = list(CONFIGURED)
    for info in unillm.engines():
        if info.name in configured:
            continue
        cls = info.engine_class
        if cls is not None and not cls.local:
            continue  # an HTTP engine needs a server: it is listed in CONFIGURED with one
        targets.append(Target(info.name, info.name))
    wanted = [w for w in os.environ.get("UNILLM_TARGETS", "").split(",") if w]
    if wanted:
        targets = [t for t in targets if any(t.id == w or t.id.startswith(w + "-") for w in wanted)]
    return targets
