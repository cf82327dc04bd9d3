"""Stop strings and stop token ids: where the text is cut, which stop wins, and that
generation really ends there."""

from __future__ import annotations

import pytest

from .base import ConformanceBase
from .common import GREEDY_LONG, PROMPTS, new_token_at, pick_stop, uses_ids


class StopConditions(ConformanceBase):
    def test_stop_string_cuts_at_the_first_match_and_stops_generating(self, gen):
        full = gen.generate(PROMPTS[1], GREEDY_LONG)
        stop = pick_stop(full.text)
        first = full.text.find(stop)
        out = gen.generate(PROMPTS[1], GREEDY_LONG.replace(stop=[stop]))
        assert out.text == full.text[:first]
        assert out.finish_reason == "stop"
        assert out.stop_reason == stop
        assert out.timing.output_tokens < full.timing.output_tokens
        if uses_ids(gen):
            n = len(out.token_ids)
            assert out.token_ids == full.token_ids[:n]
            # the kept tokens are exactly those needed to complete the stop string
            assert stop in gen.tokenizer.decode(full.token_ids[:n])[first:]
            assert stop not in gen.tokenizer.decode(full.token_ids[: n - 1])[first:]

    def test_a_stop_string_ends_each_batch_row_on_its_own(self, gen):
        full = gen.generate(PROMPTS, GREEDY_LONG)
        stop = pick_stop(full[1].text)
        outs = gen.generate(PROMPTS, GREEDY_LONG.replace(stop=[stop]))
        for whole, out in zip(full, outs):
            cut = whole.text.find(stop)
            if cut < 0:
                assert out.text == whole.text and out.finish_reason == whole.finish_reason
            else:
                assert out.text == whole.text[:cut]
                assert out.finish_reason == "stop" and out.stop_reason == stop

    def test_of_several_stop_strings_the_one_completed_first_wins(self, gen):
        full = gen.generate(PROMPTS[0], GREEDY_LONG)
        early = pick_stop(full.text)
        late = full.text[-3:] if "\ufffd" not in full.text[-3:] else early
        out = gen.generate(PROMPTS[0], GREEDY_LONG.replace(stop=[late, early]))
        cut = min(i for i in (full.text.find(early), full.text.find(late)) if i >= 0)
        assert out.text == full.text[:cut]
        assert out.finish_reason == "stop"

    def test_stop_token_ids_end_generation_with_that_token(self, gen):
        if not uses_ids(gen):
            pytest.skip("text engines do not expose token ids")
        ids, pos = new_token_at(gen, 5)
        out = gen.generate(PROMPTS[2], GREEDY_LONG.replace(stop_token_ids=[ids[pos]]))
        assert list(out.token_ids) == ids[: pos + 1]
        assert out.finish_reason == "stop"
        assert out.stop_reason == ids[pos]
        assert out.text == gen.tokenizer.decode(ids[:pos])
