"""Fixtures for the plugin's own tests: real llama.cpp on the unillm test models.

The shared semantics (every SamplingParams field, streaming, timing) are checked by unillm's
conformance kit, which test_conformance.py runs on this engine's two configurations (f32,
exact; q8_0); the other tests cover what is particular to this plugin: conversion, llama.cpp's
tokenizer, the sampler chain, and installing the package.

Without llama-cpp-python the tests are skipped, unless UNILLM_REQUIRE_ENGINES names llamacpp
(as CI does), in which case they fail.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

PRESETS = ("llama-tiny", "gpt2-tiny", "qwen2-tiny")
REQUIRED = "llamacpp" in os.environ.get("UNILLM_REQUIRE_ENGINES", "").split(",")


def pytest_collection_modifyitems(config, items) -> None:
    missing = [m for m in ("llama_cpp", "gguf", "transformers") if importlib.util.find_spec(m) is None]
    if not missing:
        return
    reason = f"not installed: {', '.join(missing)}"
    if REQUIRED:
        raise pytest.UsageError(f"{reason} -- but UNILLM_REQUIRE_ENGINES requires llamacpp")
    for item in items:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def hf_model():
    """preset -> the test model's Hugging Face directory."""
    from unillm.testing import build_test_model

    return lambda preset: str(build_test_model(preset))


@pytest.fixture(scope="session")
def gguf_file(hf_model):
    """(preset, type) -> its cached GGUF conversion."""
    from unillm_llamacpp.convert import cached_gguf

    return lambda preset, kind="f32": str(cached_gguf(hf_model(preset), kind))


@pytest.fixture(scope="session")
def llama_f32(hf_model):
    """The engine on llama-tiny, f32 weights and KV cache (exact), shared by the session."""
    import unillm

    gen = unillm.load("llamacpp", hf_model("llama-tiny"), quantization="f32", kv_cache_type="f32")
    yield gen
    gen.close()


@pytest.fixture(scope="session")
def hf_f32(hf_model):
    """The transformers engine on the same model: the reference for parameter mapping."""
    import unillm

    gen = unillm.load("transformers", hf_model("llama-tiny"), dtype="float32")
    yield gen
    gen.close()
