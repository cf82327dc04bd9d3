"""The timing layer: per-sample `Timing`, per-call `RunTiming`, and `Stats` over many calls.

Names and definitions follow vLLM's serving benchmark (docs/metrics.md has the table and how
genai-perf, llmperf, guidellm and optimum-benchmark differ). A figure that was not observed is
None, never estimated.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

now = time.perf_counter
"""The one clock every timestamp in unillm is taken from (monotonic, high resolution)."""

TimingSource = Literal["stream", "callback", "engine", "end"]
"""Where the per-token times came from.

- ``stream``: unillm's clock as the caller received each token (streaming calls).
- ``callback``: unillm's clock inside the engine's per-token hook during a batch call; the
  caller itself receives the tokens when the call returns.
- ``engine``: the engine's own per-request metrics (e.g. vLLM's RequestMetrics).
- ``end``: no per-token times: only the end of the call is known, so ttft/itl/tpot are None.
"""


@dataclass(frozen=True)
class Timing:
    """Timing of one generated sample, in seconds from the moment the call was made.

    `token_times[i]` is when output token i arrived. A chunk of k tokens arriving together has
    k equal times, so `itl` holds one gap and k-1 zero gaps for it, as METRICS.md prescribes.
    """

    e2e: float | None
    token_times: tuple[float, ...] | None
    prompt_tokens: int | None
    output_tokens: int
    source: TimingSource
    ttft_override: float | None = field(default=None, repr=False)
    grammar_compile_s: float | None = None
    """With a `structured` constraint: seconds compiling it for this call (its cache hit: ~0)."""
    grammar_mask_s: float | None = None
    """With a `structured` constraint: seconds spent computing this sample's token masks."""

    @property
    def ttft(self) -> float | None:
        """Time to first token: call made to first output token available."""
        if self.ttft_override is not None:
            return self.ttft_override
        if self.token_times:
            return self.token_times[0]
        return None

    @property
    def itl(self) -> tuple[float, ...]:
        """Every gap between consecutive output tokens (empty when not observed)."""
        t = self.token_times
        if not t or len(t) < 2:
            return ()
        return tuple(b - a for a, b in zip(t, t[1:]))

    @property
    def tpot(self) -> float | None:
        """Time per output token excluding the first: (e2e - ttft) / (output_tokens - 1)."""
        ttft = self.ttft
        if ttft is None or self.e2e is None or self.output_tokens < 2:
            return None
        return (self.e2e - ttft) / (self.output_tokens - 1)

    @property
    def tokens_per_s(self) -> float | None:
        """Output tokens per second of end-to-end latency."""
        if self.e2e is None or self.e2e <= 0:
            return None
        return self.output_tokens / self.e2e

    def to_dict(self) -> dict[str, Any]:
        return {
            "ttft": self.ttft,
            "tpot": self.tpot,
            "e2e": self.e2e,
            "itl": list(self.itl),
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "tokens_per_s": self.tokens_per_s,
            "source": self.source,
            "grammar_compile_s": self.grammar_compile_s,
            "grammar_mask_s": self.grammar_mask_s,
        }


@dataclass(frozen=True)
class RunTiming:
    """Figures of one whole call (a batch): wall time from submit to last token, throughputs."""

    wall: float
    requests: int
    prompt_tokens: int | None
    output_tokens: int

    @property
    def output_throughput(self) -> float:
        return self.output_tokens / self.wall if self.wall > 0 else math.inf

    @property
    def request_throughput(self) -> float:
        return self.requests / self.wall if self.wall > 0 else math.inf

    @property
    def total_throughput(self) -> float | None:
        if self.prompt_tokens is None:
            return None
        total = self.prompt_tokens + self.output_tokens
        return total / self.wall if self.wall > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "output_throughput": self.output_throughput,
            "request_throughput": self.request_throughput,
            "total_throughput": self.total_throughput,
        }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation, as numpy's default computes it."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class Summary:
    """Distribution of one metric: count, mean, std (population), min, max, percentiles."""

    count: int
    mean: float
    std: float
    min: float
    max: float
    median: float
    p90: float
    p95: float
    p99: float

    @property
    def p50(self) -> float:
        return self.median

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary | None:
        data = sorted(values)
        if not data:
            return None
        mean = sum(data) / len(data)
        std = math.sqrt(sum((x - mean) ** 2 for x in data) / len(data))
        return cls(
            count=len(data), mean=mean, std=std, min=data[0], max=data[-1],
            median=percentile(data, 50), p90=percentile(data, 90), p95=percentile(data, 95),
            p99=percentile(data, 99),
        )

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "p50": self.median}


PER_REQUEST_METRICS = ("ttft", "tpot", "e2e", "tokens_per_s", "prompt_tokens", "output_tokens")


class Stats:
    """Aggregates the timing of many calls: `stats.add(result)` for each, then `summary()`.

    Accepts a `Completion`, a list of them (the result of `generate`), a finished `Stream`, or
    a bare `Timing`. Per-request metrics are summarised over samples; `itl` is pooled over every
    gap of every sample, as vLLM's benchmark does.
    """

    def __init__(self) -> None:
        self.timings: list[Timing] = []
        self.runs: list[RunTiming] = []

    def add(self, item: Any) -> Stats:
        if isinstance(item, Timing):
            self.timings.append(item)
            return self
        completion = getattr(item, "completion", None)  # a finished Stream
        if completion is not None and not hasattr(item, "samples"):
            item = completion
        samples = getattr(item, "samples", None)
        if samples is not None:  # a Completion
            self.timings.extend(s.timing for s in samples)
            return self
        if isinstance(item, Sequence):
            for one in item:
                self.add(one)
            run = getattr(item, "run", None)
            if run is not None:
                self.runs.append(run)
            return self
        raise TypeError(f"Stats.add() takes a Completion, a list of them or a Timing, not {item!r}")

    def summary(self) -> dict[str, Summary | None]:
        """Each metric's `Summary` (None when no call observed it)."""
        out: dict[str, Summary | None] = {}
        for name in PER_REQUEST_METRICS:
            out[name] = Summary.of(
                v for v in (getattr(t, name) for t in self.timings) if v is not None
            )
        out["itl"] = Summary.of(gap for t in self.timings for gap in t.itl)
        return out

    def to_dict(self) -> dict[str, Any]:
        summary = self.summary()
        wall = sum(r.wall for r in self.runs)
        out_tokens = sum(r.output_tokens for r in self.runs)
        return {
            "requests": len(self.timings),
            "metrics": {k: (v.to_dict() if v else None) for k, v in summary.items()},
            "runs": [r.to_dict() for r in self.runs],
            "run_output_throughput": (out_tokens / wall) if wall > 0 else None,
            "peak_memory": peak_memory(),
            "timing_sources": sorted({t.source for t in self.timings}),
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The summary as JSON; also written to `path` when given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
        return text


def peak_memory() -> dict[str, int | None]:
    """Peak resident memory of this process, and peak GPU memory if torch has CUDA in use."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_bytes = rss if sys.platform == "darwin" else rss * 1024
    gpu = None
    torch = sys.modules.get("torch")  # never import torch just to ask
    if torch is not None:
        try:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                gpu = int(torch.cuda.max_memory_allocated())
        except Exception:  # pragma: no cover - exotic torch builds
            gpu = None
    return {"rss_bytes": rss_bytes, "gpu_bytes": gpu}
