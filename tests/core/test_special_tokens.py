"""`skip_special_tokens`: one decoding rule in the core, so every token-id engine honours it,
batch and stream alike; text engines whose server cannot keep special tokens refuse it."""

from __future__ import annotations

import pytest

import unillm
from unillm import SamplingParams as SP
from unillm.testing.fake import EOS, FakeEngine, FakeOptions

from .test_assembly import TextFakeEngine


@pytest.fixture
def eos_often() -> unillm.Generator:
    """The fake engine with end-of-sequence every other token or so: with ignore_eos the ids
    hold eos tokens in the middle of the text."""
    gen = unillm.Generator(FakeEngine(options=FakeOptions(eos_odds=0.5)), engine_name="fake",
                           model="fake")
    yield gen
    gen.close()


def test_false_keeps_special_tokens_in_the_text_and_true_drops_them(eos_often):
    params = SP(max_tokens=40, temperature=1.0, seed=1, ignore_eos=True)
    skipped = eos_often.generate("ab", params)
    kept = eos_often.generate("ab", params.replace(skip_special_tokens=False))
    assert kept.token_ids == skipped.token_ids and EOS in kept.token_ids[:-1]
    tok = eos_often.tokenizer
    assert kept.text == tok.decode_with_special(kept.token_ids) and "</s>" in kept.text
    assert skipped.text == tok.decode(skipped.token_ids) and "</s>" not in skipped.text
    assert kept.text.replace("</s>", "") == skipped.text


def test_a_terminating_eos_stays_out_of_the_text_either_way(eos_often):
    out = eos_often.generate("ab", SP(max_tokens=40, temperature=1.0, seed=1,
                                      skip_special_tokens=False))
    assert out.finish_reason == "stop" and out.token_ids[-1] == EOS
    assert "</s>" not in out.text  # vLLM's rule too: a stop token is not output text


def test_the_stream_releases_the_same_text_and_stop_strings_see_the_special_tokens(eos_often):
    params = SP(max_tokens=40, temperature=1.0, seed=1, ignore_eos=True,
                skip_special_tokens=False)
    plain = eos_often.generate("ab", params)
    at = plain.text.index("</s>")
    stop = plain.text[at:at + 5]  # the eos and the character after it
    for p in (params, params.replace(stop=[stop])):
        batch = eos_often.generate("ab", p)
        streamed = "".join(c.text for c in eos_often.stream("ab", p))
        assert streamed == batch.text
    assert batch.finish_reason == "stop" and batch.stop_reason == stop
    assert batch.text == plain.text[:at]


def test_the_plan_says_the_core_emulates_it_on_a_token_id_engine(eos_often):
    out = eos_often.generate("ab", SP(max_tokens=4, skip_special_tokens=False))
    assert "skip_special_tokens" in out.emulated


def test_a_text_engine_without_the_server_field_refuses_false_with_the_reason():
    gen = unillm.Generator(TextFakeEngine(), engine_name="textfake", model="fake")
    with pytest.raises(unillm.UnsupportedParameterError, match="skip_special_tokens") as info:
        gen.generate("ab", SP(max_tokens=4, skip_special_tokens=False))
    assert "token ids" in str(info.value)
    assert gen.generate("ab", SP(max_tokens=4, skip_special_tokens=True)).text is not None
    gen.close()


def test_a_tokenizer_without_decode_with_special_refuses_false():
    engine = FakeEngine()

    class Plain:  # a third-party tokenizer with only the protocol's required methods
        eos_token_ids = engine.tokenizer.eos_token_ids
        encode, decode = engine.tokenizer.encode, engine.tokenizer.decode

    engine.tokenizer = Plain()
    gen = unillm.Generator(engine, engine_name="fake", model="fake")
    with pytest.raises(unillm.UnsupportedParameterError, match="decode_with_special"):
        gen.generate("ab", SP(max_tokens=4, skip_special_tokens=False))
    gen.close()


def test_a_text_engine_whose_server_has_the_field_gets_it_sent_natively():
    from unillm.backends._profiles import PROFILES
    from unillm.engine import Capabilities
    from unillm.planning import plan

    params = SP(max_tokens=4, skip_special_tokens=False)
    for name in ("vllm", "sglang"):
        profile = PROFILES[name]
        assert profile.extra(params)["skip_special_tokens"] is False
        assert profile.extra(SP())["skip_special_tokens"] is True
        caps = Capabilities(params=frozenset({"max_tokens", "temperature"} | profile.params),
                            token_ids=False)
        the_plan = plan(params, caps, f"openai[{name}]", frozenset())
        assert "skip_special_tokens" not in the_plan.emulated
        assert the_plan.engine_params.skip_special_tokens is False
    for name in ("openai", "llama-cpp-python", "llama.cpp", "mlc"):
        caps = Capabilities(params=frozenset({"max_tokens", "temperature"}
                                             | PROFILES[name].params), token_ids=False)
        with pytest.raises(unillm.UnsupportedParameterError, match="skip_special_tokens"):
            plan(params, caps, "openai", frozenset())
