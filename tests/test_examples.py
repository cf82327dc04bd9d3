"""Every script in examples/ runs and prints what it promises (CI runs them all)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# example -> (patterns its output must contain, extra arguments)
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "swap_engines.py": ([r"transformers\s+tokens=\[24, 24\].*same_as_first=True"], []),
    "streaming.py": ([r"finish_reason=\w+ tokens=\d+", r"streamed text == batch text"], []),
    "async_fanout.py": ([r"8 completions.*async batch == async singles == async stream"], []),
    "chat.py": ([r"<\|user\|>\\nName a prime number", r"reply: '.*' (stop|length)"], []),
    "quantized.py": ([r"nf4: [\d,]+ bytes \([\d.]+x smaller than float32\), \d+ layers quantized",
                      r"saved and reloaded: same greedy tokens"], []),
    "serve_openai_client.py": ([r"completion: '.*' CompletionUsage\(completion_tokens=\d+", r"chat stream: "], []),
    "bench_engines.py": ([r"transformers\s+ok\s+median\s+[\d.]+ tok/s", r"ctranslate2\s+ok\s",
                          r"plot_tokens_per_s \S*latency-tokens_per_s\.png"], []),
    "structured_output.py": ([r"json: \{.*\} stop \['age', 'name'\] complete: True",
                              r"choice: (positive|negative)\n",
                              r"regex: 20[0-9]{2}-[01][0-9]-[0-3][0-9]\n",
                              r"digits: [0-689]{6}\n"], []),
    "scoring.py": ([r"' blue'\s+logprob=\s*-[\d.]+ tokens=\d+ greedy=(True|False)",
                    r"perplexity [\d.]+ over \d+ tokens, 1 window", r"prompt logprobs: \[None, -",
                    r"ctranslate2: (same scores as transformers within \d\.\de-0[5-9]|not installed)"],
                   []),
    "lm_eval_tasks.py": ([r"unillm_gen: \{'exact_match,strip': [\d.]+\}",
                          r"unillm_mc: \{'acc,none': [\d.]+, 'acc_norm,none': [\d.]+\}"], []),
    "minimal_engine.py": ([r"minimal: '.*' (stop|length) tokens=\d+",
                           r"same tokens as transformers: True"], []),
    # The conformance kit on the minimal engine: pytest's exit status is the example's, so a
    # failed check fails this test; at least 30 checks must pass (the rest are skipped with
    # the reason: parameters the engine does not declare).
    "minimal_engine_test.py": ([r"\b([3-9]\d|[1-9]\d\d+) passed"], []),
    "tool_agent.py": ([r"turn 0: format: hermes, finish_reason: tool_calls",
                       r'call: get_weather\(\{"city": ".*"\}\) -> \{"city": ',
                       r"turn 1: format: hermes, finish_reason: (stop|length)\nanswer: "], []),
    "timing_stats.py": ([r"tpot\s+p50=\s*[\d.]+ms", r"wrote .*stats\.json: 15 requests"], ["{tmp}/stats.json"]),
}


def scripts() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def test_every_example_has_a_check():
    assert set(scripts()) == set(EXPECTED), "add the new example's expected output to EXPECTED"


@pytest.mark.parametrize("name", scripts())
def test_example_runs_and_prints_its_result(name, tmp_path):
    patterns, args = EXPECTED[name]
    args = [a.format(tmp=tmp_path) for a in args]
    out = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                         text=True, timeout=600, cwd=tmp_path, env={**os.environ})
    assert out.returncode == 0, f"{name} failed:\n{out.stdout}\n{out.stderr[-3000:]}"
    for pattern in patterns:
        assert re.search(pattern, out.stdout), f"{name}: no match for {pattern!r} in:\n{out.stdout}"
