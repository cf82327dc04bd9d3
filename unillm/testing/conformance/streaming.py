"""Streams, async calls and chat: a stream reports exactly what a batch call does (every
figure, not only the text), closing a stream stops the engine, async equals sync, chat applies
the model's template, and the timing of every call is consistent."""

from __future__ import annotations

import asyncio

import pytest

import unillm
from unillm import SamplingParams as SP

from .base import ConformanceBase
from .common import (
    GREEDY,
    GREEDY_LONG,
    PROMPTS,
    pick_stop,
    server_profile,
    stream_texts,
    supports,
    uses_ids,
)


def figures(c: unillm.Completion, counts: bool = True) -> dict[str, object]:
    """Everything a result reports but the clock readings and the logprob values (compared
    with a tolerance below), by name; the token counts unless `counts` is False."""
    found: dict[str, object] = {
        "engine_params": dict(c.engine_params), "emulated": c.emulated,
        "prompt_token_ids": c.prompt_token_ids, "prompt": c.prompt, "params": c.params,
        "samples": len(c.samples)}
    for s in c.samples:
        found.update({
            f"sample {s.index} {name}": value for name, value in (
                ("text", s.text), ("token_ids", s.token_ids),
                ("finish_reason", s.finish_reason), ("stop_reason", s.stop_reason),
                *((("output_tokens", s.timing.output_tokens),
                   ("prompt_tokens", s.timing.prompt_tokens)) if counts else ()),
                ("logprob tokens", None if s.logprobs is None else
                 [(lp.token_id, sorted(lp.top)) for lp in s.logprobs]))})
    return found


def assert_same_figures(gen: unillm.Generator, streamed: unillm.Completion,
                        batch: unillm.Completion) -> None:
    """A stream reports what a batch call does. Per-token times: their count, where the batch
    call has them (a batch call of an engine without a per-token hook has none). Token counts:
    unless the engine's server is documented to send none in streams (llama-cpp-python's, whose
    streamed counts are then unillm's estimates: one token per chunk)."""
    counts = uses_ids(gen) or server_profile(gen, "stream_usage")
    got, want = figures(streamed, counts), figures(batch, counts)
    differ = {k: (got[k], want[k]) for k in want if got.get(k) != want[k]}
    assert not differ, f"stream != batch (streamed, batch): {differ}"
    for s, b in zip(streamed.samples, batch.samples):
        if b.timing.token_times is not None:
            assert len(s.timing.token_times) == len(b.timing.token_times)
        if b.logprobs is not None:
            assert [lp.logprob for lp in s.logprobs] == pytest.approx(
                [lp.logprob for lp in b.logprobs], abs=1e-4)
            for ls, lb in zip(s.logprobs, b.logprobs):
                assert list(ls.top.values()) == pytest.approx(list(lb.top.values()), abs=1e-4)


class Streaming(ConformanceBase):
    @pytest.mark.parametrize("kind", ["greedy", "stop", "seeded", "logprobs"])
    def test_streamed_text_equals_batch_text(self, gen, kind):
        params = {"greedy": GREEDY_LONG, "seeded": SP(max_tokens=24, temperature=1.0, seed=3,
                                                      ignore_eos=True)}.get(kind)
        if kind == "stop":
            stop = pick_stop(gen.generate(PROMPTS[2], GREEDY_LONG).text)
            params = GREEDY_LONG.replace(stop=[stop])
        if kind == "logprobs":
            if not supports(gen, "logprobs"):
                pytest.skip("logprobs not supported (test_unsupported_parameters_raise covers "
                            "it)")
            params = GREEDY_LONG.replace(logprobs=2)
        batch = gen.generate(PROMPTS[2], params)
        texts, completion = stream_texts(gen, PROMPTS[2], params)
        assert texts[0] == batch.text
        assert completion.text == batch.text
        assert completion.token_ids == batch.token_ids
        assert completion.finish_reason == batch.finish_reason
        assert_same_figures(gen, completion, batch)

    def test_streaming_n_samples_each_complete(self, gen):
        params = SP(n=2, temperature=1.0, seed=11, max_tokens=10, ignore_eos=True)
        texts, completion = stream_texts(gen, PROMPTS[0], params)
        assert sorted(texts) == [0, 1]
        assert [texts[i] for i in (0, 1)] == [s.text for s in completion.samples]
        batch = gen.generate(PROMPTS[0], params)
        assert [s.text for s in completion.samples] == [s.text for s in batch.samples]

    def test_closing_a_stream_early_stops_it(self, gen):
        stream = gen.stream(PROMPTS[0], SP(max_tokens=200, temperature=0.0, ignore_eos=True))
        with stream:
            for i, _ in enumerate(stream):
                if i == 3:
                    break
        assert stream.completion is not None
        assert stream.completion.finish_reason == "abort"
        assert stream.completion.timing.output_tokens < 200
        after = gen.generate(PROMPTS[0], SP(max_tokens=4, temperature=0.0))
        assert after.timing.output_tokens >= 1

    def test_async_results_equal_sync_results(self, gen):
        sync = gen.generate(PROMPTS[:3], GREEDY_LONG)

        async def run():
            batch = await gen.agenerate(PROMPTS[:3], GREEDY_LONG)
            stream = gen.astream(PROMPTS[1], GREEDY_LONG)
            text = "".join([c.text async for c in stream if c.index == 0])
            return batch, text

        batch, text = asyncio.run(run())
        assert [c.text for c in batch] == [c.text for c in sync]
        assert text == gen.generate(PROMPTS[1], GREEDY_LONG).text  # alone, like the stream

    def test_chat_applies_the_chat_template(self, gen):
        messages = [{"role": "user", "content": "Bonjour, ça va ?"}]
        out = gen.chat(messages, GREEDY)
        assert out.timing.output_tokens >= 1
        if uses_ids(gen):
            expected = gen.tokenizer.chat_token_ids(messages)
            assert list(out.prompt_token_ids) == expected
            direct = gen.generate({"prompt_token_ids": expected}, GREEDY)
            assert out.token_ids == direct.token_ids

    def test_timing_is_consistent(self, gen):
        params = SP(max_tokens=12, temperature=0.0, ignore_eos=True)
        outs = gen.generate(PROMPTS, params)
        _, streamed = stream_texts(gen, PROMPTS[0], params)
        for out in [*outs, streamed]:
            t = out.timing
            assert t.output_tokens == 12
            assert t.e2e is not None and t.e2e > 0
            if uses_ids(gen):
                assert len(out.token_ids) == t.output_tokens
                assert t.prompt_tokens == len(out.prompt_token_ids)
            if t.token_times is not None:
                assert t.ttft is not None and 0 < t.ttft <= t.e2e
                assert all(gap >= 0 for gap in t.itl)
                assert t.tpot is not None and t.tpot >= 0
        assert streamed.timing.source == "stream"
        assert len(streamed.timing.token_times) == 12
        assert outs.run.output_tokens == 12 * len(PROMPTS)
        assert outs.run.wall >= max(o.timing.e2e for o in outs) * 0.999
