"""Timing definitions (METRICS.md) and Stats aggregation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import unillm
from unillm.timing import RunTiming, Summary, Timing, percentile


def test_timing_follows_vllm_definitions():
    t = Timing(e2e=1.0, token_times=(0.2, 0.4, 0.4, 1.0), prompt_tokens=5, output_tokens=4,
               source="stream")
    assert t.ttft == 0.2
    assert t.itl == pytest.approx((0.2, 0.0, 0.6))  # a 2-token chunk: one gap, then a zero gap
    assert t.tpot == pytest.approx((1.0 - 0.2) / 3)
    assert t.tokens_per_s == pytest.approx(4.0)


def test_unobserved_figures_are_none_not_estimates():
    t = Timing(e2e=0.5, token_times=None, prompt_tokens=None, output_tokens=10, source="end")
    assert t.ttft is None and t.tpot is None and t.itl == ()
    one = Timing(e2e=0.5, token_times=(0.5,), prompt_tokens=3, output_tokens=1, source="stream")
    assert one.tpot is None  # undefined for a single token


@given(st.lists(st.floats(min_value=0, max_value=1e3), min_size=1, max_size=50),
       st.sampled_from([50, 90, 95, 99]))
def test_percentiles_match_numpy(values, q):
    assert percentile(sorted(values), q) == pytest.approx(np.percentile(values, q), rel=1e-9, abs=1e-9)


def test_summary_statistics():
    s = Summary.of([1.0, 2.0, 3.0, 4.0])
    assert (s.count, s.mean, s.min, s.max, s.median) == (4, 2.5, 1.0, 4.0, 2.5)
    assert s.std == pytest.approx(np.std([1, 2, 3, 4]))
    assert Summary.of([]) is None


def test_run_timing_throughputs():
    run = RunTiming(wall=2.0, requests=4, prompt_tokens=40, output_tokens=100)
    assert run.output_throughput == 50.0
    assert run.request_throughput == 2.0
    assert run.total_throughput == 70.0
    assert RunTiming(wall=1.0, requests=1, prompt_tokens=None, output_tokens=3).total_throughput is None


def test_stats_aggregates_real_calls_and_exports_json(fake_generator, tmp_path):
    params = unillm.SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
    stats = unillm.Stats()
    stats.add(fake_generator.generate(["a", "bb", "ccc"], params))
    stream = fake_generator.stream("dddd", params)
    for _ in stream:
        pass
    stats.add(stream)
    summary = stats.summary()
    assert summary["output_tokens"].count == 4 and summary["output_tokens"].mean == 8
    assert summary["itl"].count == 4 * 7  # pooled over every gap of every request
    assert summary["ttft"].max <= summary["e2e"].max
    path = tmp_path / "stats.json"
    stats.to_json(path)
    data = json.loads(path.read_text())
    assert data["requests"] == 4
    assert data["metrics"]["tpot"]["p99"] >= data["metrics"]["tpot"]["p50"]
    assert data["runs"][0]["output_tokens"] == 24
    assert set(data["timing_sources"]) == {"callback", "stream"}
    assert data["peak_memory"]["rss_bytes"] > 0
