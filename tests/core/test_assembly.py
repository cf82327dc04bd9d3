"""One assembly for batch and stream: the same generation reports the same figures either way.

Runs on the pure-Python fake engine (token ids) and on a text-only variant of it that reports
its own token counts, as an HTTP engine's server does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

import unillm
from unillm import SamplingParams as SP
from unillm.engine import Capabilities, EngineRequest, EngineResult, EngineSequence, TokenEvent
from unillm.testing.fake import FakeEngine


class TextFakeEngine(FakeEngine):
    """The fake engine as a text engine: text in, text out, counts and prompt length reported
    by the "server" (as OpenAI's usage figures)."""

    capabilities = Capabilities(params=frozenset({"max_tokens", "temperature", "seed"}),
                                batch_params="per_request", token_ids=False, stop_hook=True)

    def _with_ids(self, request: EngineRequest) -> EngineRequest:
        return EngineRequest(params=request.params, prompt_token_ids=self.tokenizer.encode(
            request.prompt or ""), trackers=request.trackers)

    def generate(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        out = []
        for request, result in zip(requests, super().generate([self._with_ids(r) for r in requests])):
            seq = result.samples[0]
            text = self.tokenizer.decode(seq.token_ids)
            out.append(EngineResult(
                [EngineSequence([], seq.finish_reason, text=text, output_tokens=len(seq.token_ids))],
                received={"prompt": request.prompt, **result.received},
                prompt_tokens=len(self.tokenizer.encode(request.prompt or ""))))
        return out

    def stream(self, request: EngineRequest) -> Iterator[TokenEvent]:
        """Text deltas as a server streams them: a partial UTF-8 character is held back until
        it is complete (or the sample ends)."""
        inner = self._with_ids(request)
        report = EngineResult(received={"prompt": request.prompt, **self._received(inner)},
                              prompt_tokens=len(inner.prompt_token_ids or ()))
        yield TokenEvent(result=report)
        ids: list[int] = []
        sent = ""
        for token, end in self._tokens(inner, 0):
            ids.append(token)
            text = self.tokenizer.decode(ids)
            if end is None:
                text = text.rstrip("\ufffd")
            delta, sent = text[len(sent):], max(text, sent, key=len)
            yield TokenEvent(0, (), text=delta, tokens=1)
            if end is not None:
                yield TokenEvent(0, (), finish_reason=end, output_tokens=len(ids), result=report)
                return

    stream_batch = unillm.Engine.stream_batch


def _figures(c: unillm.Completion) -> list[tuple]:
    """Everything a result reports but the clock readings. A text engine's whole response has
    no per-token times (timing source ``end``); its stream has them."""
    timed = c.prompt_token_ids is not None
    return [(s.index, s.text, s.token_ids, s.finish_reason, s.stop_reason, s.timing.output_tokens,
             s.timing.prompt_tokens, len(s.timing.token_times or ()) if timed else None,
             s.timing.ttft is not None if timed else None)
            for s in c.samples] + [(dict(c.engine_params), c.emulated, c.prompt_token_ids)]


@pytest.fixture(params=["ids", "text"])
def any_fake(request) -> unillm.Generator:
    engine = FakeEngine() if request.param == "ids" else TextFakeEngine()
    gen = unillm.Generator(engine, engine_name=f"fake-{request.param}", model="fake")
    yield gen
    gen.close()


PROMPTS = ["héllo wörld", "abc", "naïve café ☕"]


@pytest.mark.parametrize("params", [
    SP(max_tokens=24, temperature=0.0),
    SP(max_tokens=24, temperature=0.8, seed=7),
    SP(max_tokens=24, temperature=0.8, seed=7, n=3),
    SP(max_tokens=40, temperature=0.0, ignore_eos=True),
], ids=["greedy", "seeded", "seeded-n3", "ignore-eos"])
def test_batch_and_stream_agree_on_every_figure(any_fake, params):
    if params.ignore_eos and not any_fake.capabilities.token_ids:
        pytest.skip("the text fake does not take ignore_eos (it is refused, see below)")
    batch = any_fake.generate(PROMPTS, params)
    for prompt, whole in zip(PROMPTS, batch):
        stream = any_fake.stream(prompt, params)
        text = "".join(c.text for c in stream if c.index == 0)
        assert text == whole.text
        assert _figures(stream.completion) == _figures(whole)
        many = [item for _, item in any_fake.stream_many([prompt], params)
                if isinstance(item, unillm.Completion)]
        assert _figures(many[0]) == _figures(whole)


def test_a_stop_string_is_cut_the_same_way_in_batch_and_stream(any_fake):
    text = any_fake.generate("abc", SP(max_tokens=30, temperature=0.0)).text
    stop = next(ch for ch in text[3:] if ch.isprintable() and ch != "\ufffd")
    params = SP(max_tokens=30, temperature=0.0, stop=[stop])
    whole = any_fake.generate("abc", params)
    assert whole.stop_reason == stop and whole.finish_reason == "stop"
    stream = any_fake.stream("abc", params)
    assert "".join(c.text for c in stream) == whole.text
    assert _figures(stream.completion) == _figures(whole)


def test_the_engine_reports_what_it_received_on_both_paths(fake_generator):
    params = SP(max_tokens=5, temperature=0.0, stop_token_ids=[7])
    whole = fake_generator.generate("x", params)
    streamed = fake_generator.stream("x", params)
    list(streamed)
    assert whole.engine_params["ends"] == [7, 257]
    assert streamed.completion.engine_params == whole.engine_params


def test_an_engine_that_returns_no_result_per_request_is_a_named_error(fake_generator):
    engine = fake_generator.engine
    engine.generate = lambda requests: [[] for _ in requests]  # the old contract's lists
    with pytest.raises(unillm.EngineError, match="one EngineResult per request"):
        fake_generator.generate("x", SP(max_tokens=2))


def test_parameters_the_fake_cannot_honour_are_refused(fake_generator):
    with pytest.raises(unillm.UnsupportedParameterError, match="min_p"):
        fake_generator.generate("x", SP(min_p=0.5))


def test_dict_params_are_validated_like_sampling_params(fake_generator):
    out = fake_generator.generate("hi", {"max_tokens": 3, "temperature": 0})
    assert out.timing.output_tokens <= 3
    with pytest.raises(unillm.UnknownParameterError, match="max_tokens"):
        fake_generator.generate("hi", {"max_new_tokens": 3})
    with pytest.raises(unillm.InvalidParameterError, match="params"):
        fake_generator.generate("hi", 3)  # type: ignore[arg-type]
