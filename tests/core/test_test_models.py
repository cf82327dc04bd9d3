"""The test-model builder is deterministic, cached and never leaves half-written models."""

from __future__ import annotations

import hashlib
import json

from unillm.testing import build_test_model


def digest(path) -> dict[str, str]:
    return {
        name: hashlib.sha256((path / name).read_bytes()).hexdigest()
        for name in ("model.safetensors", "tokenizer.json", "config.json")
    }


def test_two_builds_in_separate_caches_are_identical(tmp_path):
    a = build_test_model("llama-tiny", cache_dir=tmp_path / "a")
    b = build_test_model("llama-tiny", cache_dir=tmp_path / "b")
    assert digest(a) == digest(b)
    assert build_test_model("llama-tiny", cache_dir=tmp_path / "a") == a  # cached
    leftovers = [p.name for p in (tmp_path / "a" / "models").iterdir() if p.name.startswith(".llama")]
    assert all(name.endswith(".lock") for name in leftovers)


def test_models_are_built_for_every_engine(tmp_path):
    path = build_test_model("llama-tiny", cache_dir=tmp_path)
    config = json.loads((path / "config.json").read_text())
    assert config["head_dim"] == 32  # vLLM's CPU attention kernels need one of 32, 64, ...
    tok = json.loads((path / "tokenizer_config.json").read_text())
    assert tok["tokenizer_class"] == "PreTrainedTokenizerFast"  # readable by transformers 4
    gen = json.loads((path / "generation_config.json").read_text())
    assert gen["top_k"] == 5  # the leak trap is in place
