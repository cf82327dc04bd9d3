"""Generator.score / score_rolling / prompt_logprobs on the pure-Python engine: the core's rules
(tokenization as lm-eval does it, windows, truncation, refusals, timing), no engine library."""

from __future__ import annotations

import asyncio
import math

import pytest

import unillm
from unillm.engine import Capabilities
from unillm.scoring import pair_ids, prefix_ids, rolling_windows
from unillm.testing.fake import BOS, EOS, ByteTokenizer, FakeEngine


class NoStartTokenizer(ByteTokenizer):
    """A tokenizer that adds no start token (as GPT-2's): an empty context is then EOS."""

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


class NoScoreEngine(FakeEngine):
    capabilities = Capabilities(params=frozenset({"max_tokens", "temperature"}),
                                score_refusal="this test engine has no scoring")


@pytest.fixture
def gen():
    g = unillm.Generator(FakeEngine(), engine_name="fake", model="fake")
    yield g
    g.close()


def greedy_ids(gen, prompt, n=6):
    return list(gen.generate(prompt, {"max_tokens": n, "temperature": 0,
                                      "ignore_eos": True}).token_ids)


# -- tokenization --------------------------------------------------------------------------
def test_trailing_space_of_the_context_moves_to_the_continuation():
    tok = ByteTokenizer()
    ctx, cont = pair_ids(tok, "Q: 2+2 = ", "4")
    assert ctx == [BOS, *b"Q: 2+2 ="]
    assert cont == list(b" 4")


def test_continuation_tokens_are_the_whole_text_tokens_after_the_context():
    tok = ByteTokenizer()
    ctx, cont = pair_ids(tok, "abc", "def")
    assert ctx + cont == tok.encode("abcdef")
    assert ctx == tok.encode("abc")


def test_an_empty_context_is_the_start_token_or_else_eos():
    assert pair_ids(ByteTokenizer(), "", "hi") == ([BOS], list(b"hi"))
    assert pair_ids(NoStartTokenizer(), "", "hi") == ([EOS], list(b"hi"))
    assert prefix_ids(NoStartTokenizer()) == [EOS]


def test_token_ids_are_taken_as_given():
    ctx, cont = pair_ids(ByteTokenizer(), {"prompt_token_ids": [BOS, 65]}, {"prompt_token_ids": [66]})
    assert (ctx, cont) == ([BOS, 65], [66])


def test_rolling_windows_follow_lm_eval():
    utils = pytest.importorskip("lm_eval.utils")
    ids = list(range(10, 47))
    for size in (2, 5, 8, 37, 38, 100):
        ours = rolling_windows(ids, [1], size)
        theirs = [utils.make_disjoint_window(w) for w in utils.get_rolling_token_windows(
            token_list=ids, prefix_token=1, max_seq_len=size - 1, context_len=1)]
        # lm-eval's pairs are (input, predicted): the model reads the input, scores the
        # predictions; ours are (context, continuation), the same split of the same tokens.
        assert ours == [(list(a), list(b)) for a, b in theirs], size
        assert [t for _, c in ours for t in c] == ids
        assert all(len(c) + len(t) <= size for c, t in ours)


# -- scores ----------------------------------------------------------------------------------
def test_score_is_the_sum_of_its_tokens_and_greedy_means_greedy(gen):
    ids = greedy_ids(gen, "Hello")
    greedy = gen.score(("Hello", {"prompt_token_ids": ids}))
    assert greedy.is_greedy is True
    assert greedy.token_ids == tuple(ids)
    assert greedy.logprob == pytest.approx(sum(greedy.token_logprobs))
    assert all(t.rank == 1 for t in greedy.tokens)
    other = gen.score(("Hello", {"prompt_token_ids": [ids[0], (ids[1] + 1) % 256, *ids[2:]]}))
    assert other.is_greedy is False
    assert other.logprob < greedy.logprob


def test_top_logprobs_are_the_most_likely_tokens(gen):
    score = gen.score(("Hello", " world"), top_logprobs=3)
    for t in score.tokens:
        assert len(t.top) == 3
        assert max(t.top.values()) >= t.logprob
        assert (t.rank == 1) == t.greedy


def test_a_batch_scores_like_single_calls_and_reports_timing(gen):
    pairs = [("Hello", " world"), ("", "abc"), ("x", "yz")]
    batch = gen.score(pairs)
    assert [s.logprob for s in batch] == [gen.score(p).logprob for p in pairs]
    assert batch.timing.requests == 3
    assert batch.timing.tokens == sum(len(s.tokens) for s in batch)
    assert batch.timing.input_tokens == sum(s.context_tokens + len(s.tokens) for s in batch)
    assert batch.timing.e2e > 0 and batch.timing.tokens_per_s > 0


def test_async_twins_give_the_same_answers(gen):
    pairs = [("Hello", " world"), ("a", "b")]
    assert [s.logprob for s in asyncio.run(gen.ascore(pairs))] == [s.logprob for s in gen.score(pairs)]
    text = "some text " * 20
    assert asyncio.run(gen.ascore_rolling(text)).logprob == gen.score_rolling(text).logprob


def test_a_rolling_score_scores_every_token_once(gen):
    text = "The same text, again. " * 20  # 440 bytes: one window of the 512-token context
    whole = gen.score_rolling(text)
    windowed = gen.score_rolling(text, window=64)
    n = len(text.encode())
    assert whole.windows == 1 and whole.scored == n
    assert windowed.windows == math.ceil((n - 63) / 63) + 1 and windowed.scored == n
    assert whole.perplexity == pytest.approx(math.exp(-whole.logprob / n))
    # the first window of the text is the same pair as the text's start
    first = gen.score(("", {"prompt_token_ids": list(text.encode())[:63]}))
    assert windowed.token_logprobs[:63] == first.token_logprobs


def test_a_rolling_score_equals_the_score_of_the_text_after_an_empty_context(gen):
    text = "abcdefgh"
    assert gen.score_rolling(text).logprob == pytest.approx(gen.score(("", text)).logprob)
    assert gen.score_rolling("").logprob == 0.0 and gen.score_rolling("").windows == 0


def test_too_long_pairs_raise_or_are_cut_from_the_left(gen):
    context = "x" * 600  # the fake model's context is 512 tokens
    with pytest.raises(unillm.ContextLengthError):
        gen.score((context, "yz"))
    cut = gen.score((context, "yz"), truncate=True)
    assert cut.context_tokens == 510 and cut.truncated == 601 - 510
    with pytest.raises(unillm.ContextLengthError):
        gen.score(("x", "y" * 600), truncate=True)


@pytest.mark.parametrize("pair", [("a", ""), ("a", 5), ("a", {"prompt_token_ids": []}),
                                  ({"prompt_token_ids": []}, "b")])
def test_bad_pairs_are_clear_errors(gen, pair):
    with pytest.raises(unillm.InvalidPromptError):
        gen.score(pair)


def test_bad_top_logprobs_and_window_name_themselves(gen):
    with pytest.raises(unillm.InvalidParameterError, match="top_logprobs"):
        gen.score(("a", "b"), top_logprobs=21)
    with pytest.raises(unillm.InvalidParameterError, match="window"):
        gen.score_rolling("abc", window=1)


def test_an_engine_that_cannot_score_refuses_with_the_reason_and_who_can():
    gen = unillm.Generator(NoScoreEngine(), engine_name="noscore", model="fake")
    with pytest.raises(unillm.UnsupportedParameterError) as info:
        gen.score(("a", "b"))
    message = str(info.value)
    assert "noscore" in message and "this test engine has no scoring" in message
    assert "transformers" in message and "vllm" in message
    with pytest.raises(unillm.UnsupportedParameterError, match="prompt_logprobs"):
        gen.generate("a", {"max_tokens": 2, "prompt_logprobs": 1})


# -- prompt_logprobs ---------------------------------------------------------------------------
def test_prompt_logprobs_are_the_prompt_scored(gen):
    out = gen.generate("Hello", {"max_tokens": 3, "prompt_logprobs": 2})
    assert "prompt_logprobs" in out.emulated
    assert "prompt_logprobs" not in out.engine_params  # the engine was not asked for them
    lps = out.prompt_logprobs
    assert len(lps) == len(out.prompt_token_ids) and lps[0] is None
    scored = gen.score(({"prompt_token_ids": [BOS]}, "Hello"), top_logprobs=2)
    assert [lp.logprob for lp in lps[1:]] == list(scored.token_logprobs)
    assert [lp.token_id for lp in lps[1:]] == list(b"Hello")
    assert all(len(lp.top) == 2 for lp in lps[1:])
    assert gen.generate("Hello", {"max_tokens": 3}).prompt_logprobs is None


def test_prompt_logprobs_the_same_streamed_batched_and_async(gen):
    params = {"max_tokens": 3, "prompt_logprobs": 1, "temperature": 0}
    batch = gen.generate(["Hello", "a"], params)
    with gen.stream("Hello", params) as stream:
        for _ in stream:
            pass
    assert stream.completion.prompt_logprobs == batch[0].prompt_logprobs
    assert asyncio.run(gen.agenerate("Hello", params)).prompt_logprobs == batch[0].prompt_logprobs
    many = list(gen.stream_many(["Hello", "a"], params))
    finals = [item for _, item in many if isinstance(item, unillm.Completion)]
    assert {c.prompt: c.prompt_logprobs for c in finals} == {c.prompt: c.prompt_logprobs for c in batch}
    assert batch[1].prompt_logprobs[0] is None and len(batch[1].prompt_logprobs) == 2
