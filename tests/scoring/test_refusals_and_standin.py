"""Scoring where an engine can only partly, or not at all: TGI through its protocol stand-in
(no real TGI runs here: tests/servers/tgi_standin.py), and the engines and server profiles
that refuse with their reason."""

from __future__ import annotations

import pytest

import unillm
from unillm.backends._profiles import PROFILES
from unillm.backends.mlc import PROFILE as MLC_PROFILE
from unillm.backends.openai import OpenAIProtocol

from ..conftest import require_engine

PAIRS = [("The quick brown fox", " jumps over the lazy dog"), ("", "Hello there"),
         ("Le café est", " très chaud, 東京 🙂")]


def test_tgi_engine_scores_through_the_tgi_protocol_standin(tgi_standin, hf_generator):
    """The tgi engine reads decoder_input_details' prefill from a stand-in that speaks TGI's
    protocol over the transformers engine: the protocol handling is what is tested here."""
    require_engine("tgi")
    with unillm.load("tgi", base_url=tgi_standin) as gen:
        scores = gen.score(PAIRS, top_logprobs=2)
        expected = hf_generator.score(PAIRS)
        for ours, theirs in zip(scores, expected):
            assert len(ours.tokens) == len(theirs.tokens)
            assert ours.logprob == pytest.approx(theirs.logprob, abs=1e-4)
            assert ours.is_greedy is None  # TGI gives no alternatives for prompt tokens
            assert all(t.text is not None and t.token_id is None for t in ours.tokens)
        assert ours.engine_params["decoder_input_details"] is True
        text = "The quick brown fox. " * 5
        rolling = gen.score_rolling(text)
        assert rolling.logprob == pytest.approx(hf_generator.score_rolling(text).logprob, abs=1e-3)
        with pytest.raises(unillm.UnsupportedParameterError, match="prompt_logprobs"):
            gen.generate("Hello", {"max_tokens": 2, "prompt_logprobs": 1})


@pytest.mark.parametrize("server", ["openai", "sglang", "llama.cpp", "mlc"])
def test_server_profiles_without_prompt_logprobs_refuse_with_the_reason(server):
    require_engine("openai")
    gen = unillm.load("openai", "m", base_url="http://127.0.0.1:9/v1", server=server, probe=False)
    with gen, pytest.raises(unillm.UnsupportedParameterError) as info:
        gen.score(("a", "b"))  # refused before any request (nothing listens on port 9)
    message = str(info.value)
    assert f"server={server!r}" in message and PROFILES[server].score_refusal in message
    assert "vllm" in message  # and which can


def test_mlc_refuses_scoring_with_its_reason():
    caps = OpenAIProtocol("mlc", MLC_PROFILE).capabilities(concurrent=False)
    assert not caps.score and "no echo" in caps.score_refusal


def test_scoring_profiles_are_the_tested_ones():
    assert {name for name, p in PROFILES.items() if p.echo_scores} == {"vllm", "llama-cpp-python"}
    assert all(p.tested_with for p in PROFILES.values() if p.echo_scores)
