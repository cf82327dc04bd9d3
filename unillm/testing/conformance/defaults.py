"""A checkpoint's sampling defaults never leak into generation.

The test models' `generation_config.json` says top_k 5, top_p 0.9, temperature 0.7,
repetition penalty 1.3, max_length 12 and do_sample (unillm/testing/models.py). Greedy parity
catches a leaked penalty or max_length; this check catches leaked sampling filters, which
greedy decoding cannot show: an engine that samples through its library's defaults (a
Hugging Face `generate` fills unset fields from the checkpoint) would draw every token from the
5 most likely, all inside the 0.9 nucleus.
"""

from __future__ import annotations

import pytest

from unillm import SamplingParams as SP

from . import reference
from .base import ConformanceBase
from .common import PROMPTS, uses_ids


class CheckpointDefaults(ConformanceBase):
    def test_the_checkpoint_sampling_defaults_do_not_leak(self, gen, model_path):
        if not uses_ids(gen):
            pytest.skip("text engines return no token ids to rank against the reference "
                        "(greedy parity catches a leaked penalty or max_length)")
        # Unfiltered sampling at temperature 1 on the test models draws ~85 % of tokens from
        # outside the top 5 and ~6 % from outside the 0.9 nucleus: among 128 tokens both occur
        # (none outside the nucleus by chance: about 3 in 10,000, for a fixed seed).
        out = gen.generate(PROMPTS[0], SP(max_tokens=128, temperature=1.0, seed=0,
                                          ignore_eos=True))
        ranked = reference.ranks(model_path, tuple(out.prompt_token_ids), tuple(out.token_ids))
        assert any(rank >= 5 for rank, _ in ranked), (
            "every sampled token was among the 5 most likely: the checkpoint's top_k leaked")
        assert any(mass >= 0.9 for _, mass in ranked), (
            "every sampled token was inside the 0.9 nucleus: the checkpoint's top_p leaked")
