"""What unillm emulates for an engine, and what it must refuse instead."""

from __future__ import annotations

import pytest

import unillm
from unillm import SamplingParams as SP
from unillm.engine import Capabilities
from unillm.planning import plan


def caps(token_ids: bool) -> Capabilities:
    return Capabilities(params=frozenset({"max_tokens", "temperature", "min_tokens"}),
                        token_ids=token_ids, stop_hook=True)


def test_text_engines_cannot_have_stop_token_ids_emulated():
    # a text engine's output has no ids to match: emulating would silently ignore them
    with pytest.raises(unillm.UnsupportedParameterError, match="stop_token_ids"):
        plan(SP(stop_token_ids=[3]), caps(False), "server", frozenset())
    assert "stop_token_ids" in plan(SP(stop_token_ids=[3]), caps(True), "local", frozenset()).emulated


def test_text_engines_cannot_defer_emulated_stop_strings_by_min_tokens():
    with pytest.raises(unillm.UnsupportedParameterError, match="min_tokens"):
        plan(SP(min_tokens=2, stop=["a"]), caps(False), "server", frozenset())
    assert plan(SP(stop=["a"]), caps(False), "server", frozenset()).emulated == ("stop",)
    assert plan(SP(min_tokens=2), caps(False), "server", frozenset()).emulated == ()
    assert plan(SP(min_tokens=2, stop=["a"]), caps(True), "local", frozenset()).emulated == ("stop",)


def test_text_engines_stopping_natively_keep_their_min_tokens():
    native = Capabilities(params=frozenset({"max_tokens", "temperature", "min_tokens", "stop"}),
                          token_ids=False)
    # the server deferred the stop strings by min_tokens: unillm must not cut its text again
    assert plan(SP(min_tokens=2, stop=["a"]), native, "server", frozenset()).rules.stop == ()
    assert plan(SP(stop=["a"]), native, "server", frozenset()).rules.stop == ("a",)


def test_values_outside_an_engines_narrower_limits_are_refused_before_running():
    limited = Capabilities(params=frozenset({"max_tokens", "temperature"}),
                           limits=(("temperature", 0.0, 2.0),))
    assert plan(SP(temperature=2.0), limited, "vllm", frozenset()).engine_params.temperature == 2.0
    assert plan(SP(temperature=1e-9), limited, "vllm", frozenset()).engine_params.is_greedy
    with pytest.raises(unillm.UnsupportedParameterError, match=r"0.0 <= temperature <= 2.0"):
        plan(SP(temperature=2.5), limited, "vllm", frozenset())
    with pytest.raises(ValueError, match="does not honour natively"):
        Capabilities(params=frozenset({"max_tokens", "temperature"}), limits=(("top_p", 0, 1),))


def test_the_openai_and_vllm_server_profiles_refuse_temperatures_above_two():
    from unillm.backends._profiles import PROFILES
    from unillm.backends.openai import OpenAIProtocol

    for name in ("openai", "vllm"):
        caps_ = OpenAIProtocol("openai", PROFILES[name]).capabilities(concurrent=True)
        with pytest.raises(unillm.UnsupportedParameterError, match="temperature"):
            plan(SP(temperature=3.0), caps_, "openai", frozenset())
    caps_ = OpenAIProtocol("openai", PROFILES["llama.cpp"]).capabilities(concurrent=True)
    assert plan(SP(temperature=3.0), caps_, "openai", frozenset()).engine_params.temperature == 3.0
