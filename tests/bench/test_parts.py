"""The bench's small parts: SSE parsing, engine specs, length distributions, prompts, and the
paired improvement statistic."""

from __future__ import annotations

import random

import pytest

from unillm.bench.prompts import LengthDist, latency_prompts, sample_lengths, token_prompts
from unillm.bench.spec import EngineSpec
from unillm.backends.http import DONE, parse_events
from unillm.bench.tune import paired_improvement


def test_sse_events_split_on_blank_lines_and_join_multiline_data():
    stream = [
        ": a comment\n", "event: message\n", 'data: {"a":\n', "data:  1}\n", "\n",
        "id: 7\r\n", 'data: {"b": 2}\r\n', "\r\n", "data: [DONE]\n", "\n",
    ]
    assert list(parse_events(stream)) == ['{"a":\n 1}', '{"b": 2}', DONE]


def test_sse_event_without_trailing_blank_line_is_kept():
    assert list(parse_events(["data: x"])) == ["x"]


def test_engine_spec_parsing():
    s = EngineSpec.parse("ctranslate2:compute_type=int8:intra_threads=2")
    assert (s.engine, dict(s.options), s.label) == (
        "ctranslate2", {"compute_type": "int8", "intra_threads": 2}, "ctranslate2:compute_type=int8:intra_threads=2")
    s = EngineSpec.parse("llamacpp:model=/m/x.gguf:label=q8")
    assert (s.model, s.label, dict(s.options)) == ("/m/x.gguf", "q8", {})
    with pytest.raises(ValueError, match="unique"):
        EngineSpec.parse_list("transformers,transformers")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        EngineSpec.parse("transformers:dtype")
    s = EngineSpec.parse("gptq:quantization.method=gptq:quantization.group_size=32:label=g")
    assert dict(s.options) == {"quantization": {"method": "gptq", "group_size": 32}}
    with pytest.raises(ValueError, match="both a value and nested keys"):
        EngineSpec.parse("gptq:quantization=gptq:quantization.group_size=32")


def test_length_distribution_bounds_and_reproducibility():
    d = LengthDist(100, 0.2)
    values = d.sample(500, random.Random(1))
    assert min(values) >= 80 and max(values) <= 120 and len(set(values)) > 10
    assert sample_lengths(5, LengthDist(10), LengthDist(7), seed=3) == [(10, 7)] * 5
    assert sample_lengths(9, d, d, 4) == sample_lengths(9, d, d, 4)
    with pytest.raises(ValueError, match="spread"):
        LengthDist(10, 1.0)


def test_prompt_set_is_fixed_and_token_prompts_have_exact_lengths(tiny_llama):
    from unillm.tokenizer import HFTokenizer

    assert len(latency_prompts()) == 16 and latency_prompts(3) == latency_prompts()[:3]
    tok = HFTokenizer.from_pretrained(tiny_llama)
    prompts = token_prompts(tok, [5, 64, 700], seed=0)
    assert [len(p) for p in prompts] == [5, 64, 700]
    assert all(p[: len(tok.encode(""))] == tok.encode("") for p in prompts)
    assert token_prompts(tok, [5, 64, 700], seed=0) == prompts


def test_paired_improvement_directions():
    up = paired_improvement([100, 100, 100], [110, 112, 108], "maximize")
    assert up["improvement"] == pytest.approx(0.10)
    assert up["ci90"][0] >= 0.08 - 1e-9 and up["ci90"][1] <= 0.12 + 1e-9
    down = paired_improvement([2.0, 2.0], [1.6, 1.6], "minimize")  # latency: lower is better
    assert down["improvement"] == pytest.approx(0.25)
    worse = paired_improvement([100, 100], [90, 90], "maximize")
    assert worse["improvement"] == pytest.approx(-0.10)
