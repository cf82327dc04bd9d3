"""The `tgi` engine against a TGI-protocol stand-in server (no real TGI can run here: see
tests/servers/tgi_standin.py). The stand-in runs the tiny Llama through unillm's transformers
engine, so the reference for every answer is that engine called directly."""

from __future__ import annotations

import asyncio

import pytest

import unillm
from unillm import SamplingParams as SP

from ..conftest import require_engine

PROMPTS = ["The quick brown fox", "def fibonacci(n):\n    return", "x"]
GREEDY = SP(max_tokens=24, temperature=0.0)


@pytest.fixture(scope="module")
def tgi(tgi_standin):
    require_engine("tgi")
    gen = unillm.load("tgi", base_url=tgi_standin, max_concurrency=4)
    yield gen
    gen.close()


def test_tgi_against_tgi_protocol_standin_server_matches_the_model(tgi, hf_generator):
    assert tgi.model == "llama-tiny"  # from the server's /info: no model name needed
    outs = tgi.generate(PROMPTS, GREEDY)
    for prompt, out in zip(PROMPTS, outs):
        direct = hf_generator.generate(prompt, GREEDY)
        assert out.text == direct.text
        assert out.finish_reason == direct.finish_reason
        assert out.timing.output_tokens == direct.timing.output_tokens
        assert out.timing.prompt_tokens == len(direct.prompt_token_ids)  # x-prompt-tokens
    sent = outs[0].engine_params
    assert sent["do_sample"] is False and sent["temperature"] is None  # TGI's greedy form


def test_tgi_against_tgi_protocol_standin_server_streams_the_same_text(tgi, hf_generator):
    stream = tgi.stream(PROMPTS[1], GREEDY)
    pieces = [c.text for c in stream]
    assert "".join(pieces) == hf_generator.generate(PROMPTS[1], GREEDY).text
    timing = stream.completion.timing
    assert timing.source == "stream" and timing.ttft is not None
    assert timing.output_tokens == 24


def test_tgi_against_tgi_protocol_standin_server_sampling_is_seeded(tgi, hf_generator):
    p = SP(max_tokens=16, temperature=0.9, top_p=0.9, top_k=20, seed=3, ignore_eos=False)
    a, b = tgi.generate([PROMPTS[0], PROMPTS[0]], p)
    assert a.text == b.text == hf_generator.generate(PROMPTS[0], p).text
    assert a.engine_params["top_p"] == 0.9 and a.engine_params["seed"] == 3
    # top_p 1 means "off": TGI refuses 1.0, so none is sent
    assert tgi.generate(PROMPTS[0], p.replace(top_p=1.0)).engine_params["top_p"] is None


def test_tgi_against_tgi_protocol_standin_server_stop_strings_end_the_stream(tgi):
    full = tgi.generate(PROMPTS[0], SP(max_tokens=48, temperature=0.0))
    stop = full.text[10:12]
    out = tgi.generate(PROMPTS[0], SP(max_tokens=48, temperature=0.0, stop=[stop]))
    assert out.text == full.text[: full.text.find(stop)]
    assert out.finish_reason == "stop" and out.stop_reason == stop
    assert out.timing.output_tokens < full.timing.output_tokens  # generation really stopped
    assert "stop" in out.emulated


def test_tgi_against_tgi_protocol_standin_server_async(tgi):
    sync = tgi.generate(PROMPTS, GREEDY)

    async def run():
        batch = await tgi.agenerate(PROMPTS, GREEDY)
        text = "".join([c.text async for c in tgi.astream(PROMPTS[2], GREEDY)])
        return batch, text

    batch, text = asyncio.run(run())
    assert [c.text for c in batch] == [c.text for c in sync]
    assert text == sync[2].text


@pytest.mark.parametrize("field,value", [
    ("min_p", 0.1), ("presence_penalty", 0.5), ("frequency_penalty", 0.5), ("min_tokens", 2),
    ("ignore_eos", True), ("logprobs", 1), ("stop_token_ids", [3]), ("skip_special_tokens", False),
])
def test_tgi_refuses_what_tgi_cannot_honour(tgi, field, value):
    with pytest.raises(unillm.UnsupportedParameterError, match=field):
        tgi.generate("x", SP(max_tokens=4, **{field: value}))


def test_tgi_has_no_chat_template_of_its_own(tgi):
    with pytest.raises(unillm.InvalidPromptError, match="tokenizer"):
        tgi.chat([{"role": "user", "content": "hi"}])
