"""unillm's conformance kit on this engine: every SamplingParams field, streaming, async, chat
and timing, against the float32 reference (unillm.testing.conformance)."""

from __future__ import annotations

from unillm.testing.conformance import EngineConformance, Target


class TestLlamaCpp(EngineConformance):
    targets = [
        # f32 weights and an f32 KV cache (llama.cpp's default cache is f16): exact.
        Target("llamacpp", "llamacpp", {"quantization": "f32", "kv_cache_type": "f32"}),
        Target("llamacpp-q8_0", "llamacpp", {"quantization": "q8_0"}, exact=False,
               inexact_reason="8-bit weights and an f16 KV cache change near-tied argmaxes",
               presets=("llama-tiny",)),
    ]
