"""Length and the end of sequence: max_tokens is exact (also past engines' own defaults), eos
ends a sample and ignore_eos overrides it, min_tokens defers every stop condition, and per-prompt
parameters come back in order."""

from __future__ import annotations

import pytest

from unillm import SamplingParams as SP

from .base import ConformanceBase
from .common import (
    GREEDY_LONG,
    PROMPTS,
    eos_prompt,
    new_token_at,
    skip_unless_supported,
    uses_ids,
)


class LengthAndEos(ConformanceBase):
    def test_max_tokens_is_exact(self, gen):
        outs = gen.generate(PROMPTS, SP(max_tokens=17, temperature=0.0, ignore_eos=True))
        for out in outs:
            assert out.timing.output_tokens == 17
            assert out.finish_reason == "length"
            if uses_ids(gen):
                assert len(out.token_ids) == 17
        sampled = gen.generate(PROMPTS[0], SP(max_tokens=9, temperature=1.0, seed=1,
                                              ignore_eos=True))
        assert sampled.timing.output_tokens == 9

    def test_max_tokens_is_honoured_beyond_engine_defaults(self, gen):
        # 520 is past CTranslate2's default max_length (512); 17 (above) is past vLLM's 16.
        n = 520
        ctx = gen.engine.context_length
        if ctx is not None and n + 16 > ctx:
            pytest.skip(f"the model's context ({ctx}) is too short for {n} tokens")
        out = gen.generate(PROMPTS[3], SP(max_tokens=n, temperature=0.0, ignore_eos=True))
        assert out.timing.output_tokens == n
        assert out.finish_reason == "length"

    def test_per_prompt_params_return_in_order(self, gen):
        prompts = ["one", "two", "three", "four"]
        params = [SP(max_tokens=k, temperature=0.0, ignore_eos=True) for k in (3, 7, 3, 5)]
        outs = gen.generate(prompts, params)
        assert [o.prompt for o in outs] == prompts
        assert [o.timing.output_tokens for o in outs] == [3, 7, 3, 5]
        for prompt, p, out in zip(prompts, params, outs):
            alone = gen.generate(prompt, p)
            assert out.text == alone.text and out.token_ids == alone.token_ids

    def test_eos_ends_generation_and_ignore_eos_overrides_it(self, target, gen, model_path):
        prompt, k = eos_prompt(model_path, target, gen)
        out = gen.generate(prompt, SP(max_tokens=64, temperature=0.0))
        assert out.finish_reason == "stop"
        assert out.stop_reason is None
        if target.exact:
            assert out.timing.output_tokens == k
        if uses_ids(gen):
            # The terminating token is part of the sample's ids (not of its text).
            assert out.token_ids[-1] in gen.tokenizer.eos_token_ids
        forced = gen.generate(prompt, SP(max_tokens=64, temperature=0.0, ignore_eos=True))
        assert forced.finish_reason == "length"
        assert forced.timing.output_tokens == 64

    def test_min_tokens_defers_every_stop_condition(self, target, gen, model_path):
        skip_unless_supported(gen, "min_tokens")
        prompt, k = eos_prompt(model_path, target, gen)
        out = gen.generate(prompt, SP(max_tokens=64, temperature=0.0, min_tokens=k + 5))
        assert out.timing.output_tokens >= k + 5
        if uses_ids(gen):
            eos = gen.tokenizer.eos_token_ids
            assert not any(t in eos for t in out.token_ids[: k + 4]), "eos before min_tokens"

    def test_min_tokens_defers_stop_token_ids_too(self, gen):
        if not uses_ids(gen):
            pytest.skip("text engines do not expose token ids")
        skip_unless_supported(gen, "min_tokens")
        ids, pos = new_token_at(gen, 3)
        minimum = pos + 4
        out = gen.generate(PROMPTS[2], GREEDY_LONG.replace(stop_token_ids=[ids[pos]],
                                                           min_tokens=minimum))
        # Engines may suppress the token before min_tokens or let it pass; none may stop on it.
        assert out.timing.output_tokens >= minimum, "the stop token fired before min_tokens"
        assert list(out.token_ids[:pos]) == ids[:pos]
        if out.finish_reason == "stop":
            assert out.token_ids[-1] == ids[pos] and out.stop_reason == ids[pos]
