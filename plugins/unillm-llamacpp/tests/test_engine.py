"""What is particular to the llama.cpp engine: its sampler chain, masks, options, streaming.

Parameters are checked against the transformers engine on the same float32 model: with f32
weights and KV cache both compute the same logits, so equal greedy ids mean the parameter
means the same thing on both.
"""

from __future__ import annotations

import math

import pytest

import unillm
from unillm import SamplingParams as SP

PROMPT = "import os\nimport os\nimport os\n"


def test_llama_cpp_sampling_defaults_do_not_leak(llama_f32):
    # llama.cpp samples with top_k 40, top_p 0.95 and min_p 0.05 unless told otherwise. With
    # unillm's defaults (all off) some sampled tokens must be rarer than min_p 0.05 allows.
    out = llama_f32.generate("The", SP(max_tokens=96, temperature=1.0, seed=0, logprobs=1,
                                       ignore_eos=True))
    rare = [lp for lp in out.logprobs if lp.logprob < max(lp.top.values()) + math.log(0.05)]
    assert rare, "every sampled token passed min_p=0.05: llama.cpp's defaults leaked"
    sent = out.engine_params
    assert (sent["top_k"], sent["top_p"], sent["min_p"], sent["typical_p"]) == (0, 1.0, 0.0, 1.0)
    assert not any(name.startswith(("top_k", "typical", "mirostat")) for name in sent["sampler_chain"])


def test_the_sampler_chain_applies_temperature_first_and_is_recorded(llama_f32):
    out = llama_f32.generate("x", SP(max_tokens=4, temperature=0.7, top_k=5, top_p=0.9,
                                     min_p=0.1, seed=3))
    chain = out.engine_params["sampler_chain"]
    assert [name.split("(")[0] for name in chain] == [
        "penalties", "penalties", "temp", "top_k", "top_p", "min_p", "dist"]
    assert chain[-1] == "dist(seed=3)" and out.engine_params["seed"] == 3


@pytest.mark.parametrize("field,value", [
    ("repetition_penalty", 1.8), ("presence_penalty", 1.5), ("frequency_penalty", 0.7),
])
def test_penalties_mean_what_they_mean_on_transformers(llama_f32, hf_f32, field, value):
    # repetition_penalty counts prompt tokens (the prompt repeats "import os"), presence and
    # frequency penalties count output tokens only: any other window changes the ids.
    params = SP(max_tokens=40, temperature=0.0, ignore_eos=True, **{field: value})
    got = llama_f32.generate(PROMPT, params)
    assert got.token_ids == hf_f32.generate(PROMPT, params).token_ids
    off = params.replace(**{field: SP.model_fields[field].default})
    assert got.token_ids != llama_f32.generate(PROMPT, off).token_ids, f"{field} had no effect"


def test_min_tokens_masks_eos_and_stop_tokens_as_transformers_does(llama_f32, hf_f32):
    plain = llama_f32.generate(PROMPT, SP(max_tokens=24, temperature=0.0, ignore_eos=True))
    stop_id = plain.token_ids[2]
    params = SP(max_tokens=24, temperature=0.0, stop_token_ids=[stop_id], min_tokens=8)
    got = llama_f32.generate(PROMPT, params)
    assert stop_id not in got.token_ids[:8]
    assert got.token_ids == hf_f32.generate(PROMPT, params).token_ids
    assert got.engine_params["masked_before_min_tokens"] == sorted({stop_id, 2})


def test_a_gguf_file_needs_no_quantization_option_and_llama_cpp_s_reserved_seed_is_refused(
        gguf_file, llama_f32):
    with pytest.raises(unillm.InvalidParameterError, match="quantization"):
        unillm.load("llamacpp", gguf_file("llama-tiny", "f32"), quantization="q8_0")
    with pytest.raises(unillm.UnsupportedParameterError, match="LLAMA_DEFAULT_SEED"):
        llama_f32.generate("x", SP(max_tokens=2, seed=2**32 - 1))


def test_context_defaults_to_the_trained_length_at_most_4096(hf_model, gguf_file):
    with unillm.load("llamacpp", gguf_file("gpt2-tiny", "f32")) as gen:
        assert gen.engine.context_length == 1024  # GPT-2's learned position table
    with unillm.load("llamacpp", gguf_file("llama-tiny", "f32"), n_ctx=256) as gen:
        assert gen.engine.context_length == 256
        with pytest.raises(unillm.ContextLengthError):
            gen.generate("x", SP(max_tokens=300))


def test_a_stop_string_ends_generation_not_only_the_text(llama_f32):
    full = llama_f32.generate("def f(x):", SP(max_tokens=40, temperature=0, ignore_eos=True))
    stop = full.text[6:8]
    out = llama_f32.generate("def f(x):", SP(max_tokens=400, temperature=0, ignore_eos=True,
                                              stop=[stop]))
    assert out.finish_reason == "stop" and out.stop_reason == stop
    llm = llama_f32.engine.llm
    assert llm.n_tokens <= len(out.prompt_token_ids) + len(out.token_ids)  # nothing evaluated past it


def test_closing_a_stream_stops_llama_cpp(llama_f32):
    stream = llama_f32.stream("The", SP(max_tokens=400, temperature=0, ignore_eos=True))
    with stream:
        for i, _ in enumerate(stream):
            if i == 3:
                break
    assert stream.completion.finish_reason == "abort"
    assert llama_f32.engine.llm.n_tokens < len(stream.completion.prompt_token_ids) + 10
    assert llama_f32.generate("The", SP(max_tokens=3, temperature=0)).timing.output_tokens == 3


def test_out_of_vocabulary_prompt_ids_are_refused_before_llama_cpp_sees_them(llama_f32):
    with pytest.raises(unillm.InvalidPromptError, match="outside the vocabulary"):
        llama_f32.generate({"prompt_token_ids": [1, 10**6]}, SP(max_tokens=2))
    assert llama_f32.generate("ok", SP(max_tokens=2, temperature=0)).timing.output_tokens == 2


def test_a_failing_prompt_does_not_cost_the_rest_of_the_batch_its_results(llama_f32):
    params = SP(max_tokens=3, temperature=0, ignore_eos=True)
    with pytest.raises(unillm.BatchError) as info:
        llama_f32.generate(["ok", {"prompt_token_ids": [1, 10**6]}, "fine"], params)
    done = info.value.completions
    assert [c is None for c in done] == [False, True, False]
    assert done[2].token_ids == llama_f32.generate("fine", params).token_ids
    assert "outside the vocabulary" in str(info.value.errors[1])


def test_a_gguf_file_s_tokenizer_keeps_special_tokens_when_asked(gguf_file, hf_model):
    # A bare .gguf has only llama.cpp's tokenizer: skip_special_tokens=False needs its
    # `decode_with_special`, which writes control tokens as their text (as the HF one does).
    from unillm.tokenizer import HFTokenizer

    hf = HFTokenizer.from_pretrained(hf_model("llama-tiny"))
    with unillm.load("llamacpp", gguf_file("llama-tiny", "f32")) as gen:
        tok = gen.tokenizer
        ids = [*tok.encode("x y"), 2, *tok.encode("z")[1:], 0]
        assert tok.decode_with_special(ids) == hf.decode_with_special(ids)
        assert "</s>" in tok.decode_with_special(ids) and "</s>" not in tok.decode(ids)
        out = gen.generate("the", SP(max_tokens=3, temperature=0.0, ignore_eos=True,
                                     logit_bias={2: 100.0}, skip_special_tokens=False))
        assert list(out.token_ids) == [2, 2, 2] and out.text == "</s></s></s>"
