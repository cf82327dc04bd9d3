"""Sampling parameters: seeds reproduce, filters and penalties mean what unillm says they mean,
n returns n samples, logprobs describe the chosen tokens, and a parameter the engine cannot
honour is refused, never ignored."""

from __future__ import annotations

import functools

import pytest

import unillm
from unillm import SamplingParams as SP
from unillm.engine import ALL_FIELDS, EMULATED_BY_CORE

from . import reference
from .base import ConformanceBase
from .common import PROMPTS, server_text, skip_unless_supported, uses_ids

NON_DEFAULT = {
    "top_p": 0.5, "top_k": 5, "min_p": 0.1, "repetition_penalty": 1.2, "presence_penalty": 0.5,
    "frequency_penalty": 0.5, "seed": 1, "min_tokens": 2, "ignore_eos": True, "logprobs": 2,
    "structured": {"regex": "[a-z]+"}, "logit_bias": {1: 1.0}, "allowed_token_ids": [1, 2],
    "bad_words": ["x"], "skip_special_tokens": False,
}
"""A value other than the default for every field an engine may leave out."""

KIT_NEEDS = frozenset({"max_tokens", "temperature", "seed", "ignore_eos"})
"""What the kit's checks need natively: fixed-length outputs (ignore_eos) and reproducible
samples (seed). An engine without them cannot be checked, so the kit says so first."""


@functools.lru_cache(maxsize=4)
def _penalty_prompt(path: str, penalty: float, max_tokens: int) -> str:
    """A prompt on which penalising prompt tokens (unillm's definition) and penalising only
    output tokens give different greedy continuations, so the test below can tell them apart."""
    import keyword
    import random

    for i in range(200):
        rng = random.Random(i)
        prompt = " ".join(rng.choice(keyword.kwlist) for _ in range(rng.randint(3, 10)))
        ids = reference.encode(path, prompt)
        right = reference.greedy_ids(path, ids, max_tokens, penalty)
        wrong = reference.greedy_ids(path, ids, max_tokens, penalty, penalize_prompt=False)
        if right != wrong:
            return prompt
    pytest.fail("no candidate prompt distinguishes prompt penalties from output penalties")


class Sampling(ConformanceBase):
    def test_the_engine_honours_what_the_kit_needs(self, gen):
        missing = sorted(KIT_NEEDS - gen.capabilities.params)
        assert not missing, (f"the conformance kit needs {missing} natively (fixed-length and "
                             "reproducible outputs) to check this engine")

    def test_same_seed_same_sample_different_seed_different_sample(self, gen):
        p = SP(temperature=1.0, seed=123, max_tokens=16, ignore_eos=True)
        a = gen.generate(PROMPTS[0], p)
        b = gen.generate(PROMPTS[0], p)
        c = gen.generate(PROMPTS[0], p.replace(seed=124))
        assert a.text == b.text and a.token_ids == b.token_ids
        assert a.text != c.text
        # An unseeded sampling call in between must not move a seeded call's random stream (an
        # engine whose random generator is seeded once per thread, like CTranslate2's, would).
        gen.generate(PROMPTS[1], p.replace(seed=None))
        d = gen.generate(PROMPTS[0], p)
        assert d.token_ids == a.token_ids and d.text == a.text

    def test_top_k_beyond_the_vocabulary_is_no_filter(self, gen):
        skip_unless_supported(gen, "top_k")
        p = SP(temperature=1.0, seed=9, max_tokens=16, ignore_eos=True)
        unfiltered = gen.generate(PROMPTS[0], p)
        huge = gen.generate(PROMPTS[0], p.replace(top_k=10**7))
        assert huge.text == unfiltered.text

    def test_n_returns_n_samples(self, gen):
        params = SP(n=3, temperature=1.0, seed=7, max_tokens=12, ignore_eos=True)
        out = gen.generate(PROMPTS[0], params)
        assert [s.index for s in out.samples] == [0, 1, 2]
        assert len({s.text for s in out.samples}) >= 2
        again = gen.generate(PROMPTS[0], params)
        assert [s.text for s in again.samples] == [s.text for s in out.samples]
        greedy = gen.generate(PROMPTS[0], SP(n=2, temperature=0.0, max_tokens=12))
        assert greedy.samples[0].text == greedy.samples[1].text

    @pytest.mark.parametrize("field,value", [("top_k", 1), ("top_p", 1e-6), ("min_p", 1.0)])
    def test_filters_that_keep_one_token_make_sampling_greedy(self, gen, field, value):
        skip_unless_supported(gen, field)
        greedy = gen.generate(PROMPTS[1], SP(max_tokens=24, temperature=0.0, ignore_eos=True))
        sampled = gen.generate(PROMPTS[1], SP(max_tokens=24, temperature=1.5, seed=5,
                                              ignore_eos=True, **{field: value}))
        assert sampled.text == greedy.text

    @pytest.mark.parametrize("field,value", [
        ("repetition_penalty", 3.0), ("presence_penalty", 2.0), ("frequency_penalty", 2.0),
    ])
    def test_penalties_change_greedy_output(self, gen, field, value):
        skip_unless_supported(gen, field)
        plain = gen.generate(PROMPTS[3], SP(max_tokens=48, temperature=0.0, ignore_eos=True))
        penalised = gen.generate(PROMPTS[3], SP(max_tokens=48, temperature=0.0,
                                                ignore_eos=True, **{field: value}))
        assert penalised.text != plain.text, f"{field}={value} had no effect"

    def test_repetition_penalty_counts_the_prompt(self, target, gen, model_path):
        skip_unless_supported(gen, "repetition_penalty")
        if not target.exact:
            pytest.skip(f"{target.id}: greedy parity not expected ({target.inexact_reason})")
        penalty, n = 2.0, 24
        prompt = _penalty_prompt(model_path, penalty, n)
        expected = reference.greedy_ids(model_path, reference.encode(model_path, prompt), n,
                                        penalty)
        params = SP(max_tokens=n, temperature=0.0, repetition_penalty=penalty)
        alone = gen.generate(prompt, params)
        together = gen.generate([PROMPTS[3], prompt, PROMPTS[4]], params)[1]  # mixed lengths
        for out in (alone, together):
            if uses_ids(gen):
                assert list(out.token_ids) == expected
            else:
                assert server_text(out.text) == server_text(reference.decode(model_path,
                                                                             expected))

    def test_unsupported_parameters_raise_instead_of_being_ignored(self, gen):
        unsupported = sorted(ALL_FIELDS - gen.capabilities.params - EMULATED_BY_CORE)
        for field in unsupported:
            with pytest.raises(unillm.UnsupportedParameterError) as info:
                gen.generate(PROMPTS[0], SP(max_tokens=4, temperature=1.0,
                                            **{field: NON_DEFAULT[field]}))
            assert field in str(info.value) and gen.engine_name in str(info.value)

    def test_logprobs_describe_the_chosen_tokens(self, gen):
        if "logprobs" not in gen.capabilities.params:
            pytest.skip("logprobs not supported (test_unsupported_parameters_raise covers it)")
        out = gen.generate(PROMPTS[0], SP(max_tokens=8, temperature=0.0, logprobs=3,
                                          ignore_eos=True))
        assert out.logprobs is not None and len(out.logprobs) == out.timing.output_tokens
        for lp in out.logprobs:
            assert lp.logprob <= 0.0
            assert len(lp.top) == 3
            assert lp.logprob == pytest.approx(max(lp.top.values()), abs=1e-4)  # greedy: argmax
