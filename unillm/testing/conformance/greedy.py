"""Greedy decoding equals the independent float32 reference, on every architecture, alone and
in mixed-length batches, whatever else is in the batch."""

from __future__ import annotations

import pytest

from ..models import build_test_model
from .base import ConformanceBase
from .common import GREEDY, GREEDY_LONG, PROMPTS, assert_matches_reference
from .target import ALL_PRESETS


class GreedyParity(ConformanceBase):
    @pytest.mark.parametrize("preset", ALL_PRESETS)
    def test_greedy_matches_reference_one_prompt_at_a_time(self, generator_on, target, preset):
        if not target.exact:
            pytest.skip(f"{target.id}: greedy parity not expected ({target.inexact_reason})")
        gen = generator_on(preset)
        path = str(build_test_model(preset))
        for prompt in PROMPTS:
            assert_matches_reference(gen, path, prompt, gen.generate(prompt, GREEDY))

    @pytest.mark.parametrize("preset", ALL_PRESETS)
    def test_greedy_matches_reference_in_a_mixed_length_batch(self, generator_on, target, preset):
        # Every preset: without a bos token (gpt2), "x" is a one-token prompt, which some
        # engines batch differently from longer ones (CTranslate2 then counts the others'
        # prompt tails).
        if not target.exact:
            pytest.skip(f"{target.id}: greedy parity not expected ({target.inexact_reason})")
        gen = generator_on(preset)
        path = str(build_test_model(preset))
        outs = gen.generate(PROMPTS, GREEDY)
        assert len(outs) == len(PROMPTS)
        for prompt, out in zip(PROMPTS, outs):
            assert out.prompt == prompt
            assert_matches_reference(gen, path, prompt, out)

    def test_greedy_is_deterministic(self, gen):
        a = gen.generate(PROMPTS, GREEDY)
        b = gen.generate(PROMPTS, GREEDY)
        assert [x.text for x in a] == [x.text for x in b]
        assert [x.token_ids for x in a] == [x.token_ids for x in b]

    def test_greedy_does_not_depend_on_batch_company(self, target, gen):
        if target.batch_variance:
            pytest.skip(f"{target.id}: {target.batch_variance}")
        alone = gen.generate(PROMPTS[1], GREEDY_LONG)
        together = gen.generate(PROMPTS, GREEDY_LONG)[1]
        assert alone.text == together.text
