"""transformers-specific behaviour (the shared semantics are in tests/conformance)."""

from __future__ import annotations

import pytest

import unillm
import unillm.testing
from unillm import SamplingParams as SP


@pytest.fixture
def forward_calls(hf_generator):
    """Counts the model's forward passes during a test."""
    calls = []
    handle = hf_generator.engine.model_obj.register_forward_hook(lambda *a: calls.append(1))
    yield calls
    handle.remove()


def test_a_stop_string_stops_generation_not_only_the_text(hf_generator, forward_calls):
    full = hf_generator.generate("def f(x):", SP(max_tokens=40, temperature=0, ignore_eos=True))
    stop = full.text[6:8]
    forward_calls.clear()
    out = hf_generator.generate("def f(x):", SP(max_tokens=200, temperature=0, ignore_eos=True,
                                                stop=[stop]))
    assert out.finish_reason == "stop"
    # one forward pass per generated token (+ prefill): nowhere near the 200 allowed
    assert len(forward_calls) <= len(out.token_ids) + 2


def test_checkpoint_generation_config_does_not_leak(hf_generator):
    # The test model's generation_config.json says top_k=5, temperature=0.7, do_sample=True.
    ignored = hf_generator.info["checkpoint_sampling_defaults_ignored"]
    assert ignored["top_k"] == 5 and ignored["do_sample"] is True
    out = hf_generator.generate(
        "The", SP(max_tokens=64, temperature=1.0, seed=0, logprobs=5, ignore_eos=True)
    )
    # With top_k=5 leaking in, every sampled token would be one of the 5 most likely.
    outside = [lp for lp in out.logprobs if lp.token_id not in lp.top]
    assert outside, "every sampled token was in the top 5: the checkpoint's top_k leaked"
    assert out.engine_params["top_k"] == 0 and out.engine_params["do_sample"] is True


def test_seeded_calls_leave_the_global_rng_alone(hf_generator):
    import torch

    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    hf_generator.generate("x", SP(max_tokens=4, temperature=1.0, seed=9))
    assert torch.equal(torch.rand(3), expected)


def test_context_length_is_checked_before_running(hf_generator):
    ctx = hf_generator.engine.context_length
    with pytest.raises(unillm.ContextLengthError, match="lower max_tokens"):
        hf_generator.generate({"prompt_token_ids": [5] * 100}, SP(max_tokens=ctx))
    with pytest.raises(unillm.ContextLengthError, match="context"):
        hf_generator.generate({"prompt_token_ids": [5] * (ctx + 1)}, SP(max_tokens=1))


def test_an_engine_failure_is_an_engine_error_and_the_generator_survives(hf_generator):
    with pytest.raises(unillm.EngineError, match="transformers"):
        hf_generator.generate({"prompt_token_ids": [10**7]}, SP(max_tokens=2))
    assert hf_generator.generate("ok", SP(max_tokens=2, temperature=0)).timing.output_tokens == 2


def test_options_are_validated_with_named_errors(hf_generator, tiny_llama):
    with pytest.raises(unillm.UnknownParameterError, match="dtyp.*Did you mean 'dtype'"):
        unillm.load("transformers", tiny_llama, dtyp="float32")
    with pytest.raises(unillm.InvalidParameterError, match="transformers engine option.dtype"):
        unillm.load("transformers", tiny_llama, dtype="float64")


def test_a_directory_without_a_model_is_an_engine_error(hf_generator, tmp_path):
    """transformers' own error for a directory that exists but holds no model becomes an
    EngineError naming the engine (the registry's rule: tests/core/test_registry.py)."""
    empty = tmp_path / "no-model-here"
    empty.mkdir()
    with pytest.raises(unillm.EngineError, match="'transformers' failed: could not load"):
        unillm.load("transformers", str(empty))


def test_empty_prompts_are_rejected_clearly(tiny_llama):
    gpt2 = unillm.load("transformers", str(unillm.testing.build_test_model("gpt2-tiny")),
                       dtype="float32")
    with gpt2, pytest.raises(unillm.InvalidPromptError, match="empty"):
        gpt2.generate("", SP(max_tokens=2))


def test_closed_generator_refuses_calls(tiny_llama):
    gen = unillm.load("transformers", tiny_llama, dtype="float32")
    with gen:
        gen.generate("x", SP(max_tokens=1))
    with pytest.raises(unillm.GeneratorClosedError):
        gen.generate("x", SP(max_tokens=1))


def test_info_reports_weights_and_device(hf_generator):
    info = hf_generator.info
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["weight_bytes"] >= info["parameters"] * 4


def test_save_writes_a_model_that_loads_back(hf_generator, tmp_path):
    params = SP(max_tokens=12, temperature=0.0, ignore_eos=True)
    expected = hf_generator.generate("Bonjour", params).token_ids
    hf_generator.save(tmp_path)
    with unillm.load("transformers", tmp_path, dtype="float32") as again:
        assert again.generate("Bonjour", params).token_ids == expected
        # the checkpoint's own sampling defaults were saved, not the engine's neutral ones
        assert again.info["checkpoint_sampling_defaults_ignored"]["top_k"] == 5
        assert again.info["quantization"] is None
