"""A model argument that can only be a path, and is not there, is named as a missing path
before any engine tries it as a hub id."""

from __future__ import annotations

import pytest

import unillm
from unillm.model_source import check_local_model, looks_like_path


@pytest.mark.parametrize("model", ["/no/such/model", "./model", "../m", "~/models/x",
                                   "path/to/model", ".cache/x"])
def test_paths(model):
    assert looks_like_path(model)


@pytest.mark.parametrize("model", ["gpt2", "org/name", "HF://mlc-ai/Llama-3-8B-q4f16_1-MLC",
                                   "Qwen/Qwen2.5-0.5B-Instruct"])
def test_hub_ids_and_urls_are_left_to_the_engine(model):
    assert not looks_like_path(model)
    check_local_model(model)  # does not raise


def test_a_missing_path_names_itself_and_the_part_that_exists(tmp_path):
    missing = tmp_path / "models" / "llama"
    with pytest.raises(unillm.InvalidParameterError) as info:
        check_local_model(str(missing))
    text = str(info.value)
    assert repr(str(missing)) in text and "does not exist" in text
    assert f"({tmp_path} exists, models/llama does not)" in text
    assert "test:llama-tiny" in text  # and what would work


def test_an_existing_path_passes(tmp_path):
    check_local_model(str(tmp_path))


def test_load_checks_before_the_engine_runs():
    with pytest.raises(unillm.InvalidParameterError, match="does not exist"):
        unillm.load("transformers", "/no/such/model")
