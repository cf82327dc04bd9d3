"""`Generator.prepare`: input errors come out at once, and a prepared prompt runs once."""

from __future__ import annotations

import pytest

import unillm
from unillm import SamplingParams as SP


def test_prepare_raises_input_errors_before_anything_runs(fake_generator):
    with pytest.raises(unillm.ContextLengthError):
        fake_generator.prepare("word " * 3000, SP(max_tokens=4))
    with pytest.raises(unillm.InvalidPromptError):
        fake_generator.prepare("x", SP(), messages=[{"role": "user", "content": "x"}])


def test_a_prepared_prompt_gives_the_same_result_and_runs_once(fake_generator):
    params = SP(max_tokens=6, temperature=0.0)
    prepared = fake_generator.prepare("def f(x):", params)
    assert fake_generator.generate(prepared).token_ids == \
        fake_generator.generate("def f(x):", params).token_ids
    with pytest.raises(unillm.InvalidPromptError, match="runs once"):
        fake_generator.generate(prepared)
    chat = fake_generator.prepare(messages=[{"role": "user", "content": "hi"}], params=params)
    streamed = "".join(c.text for c in fake_generator.stream(chat))
    assert streamed == fake_generator.chat([{"role": "user", "content": "hi"}], params).text
