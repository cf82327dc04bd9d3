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
