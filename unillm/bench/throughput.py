"""`bench throughput`: offline, K prompts of chosen input/output token lengths, at batch sizes.

The prompts are cut from the shipped text as token ids (exact input lengths for every engine
sharing the tokenizer); each request asks for exactly its output length with eos blocked, and
every completion is checked. At batch size B the K prompts go to `generate` B at a time, one
call after another: the figure is what an offline job that batches B at a time gets. Engines
whose batches must share parameters (`batch_params="uniform"`) run each distinct output length
as its own batch, which is their real cost for mixed lengths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..timing import Summary
from .jobs import fixed_length_params, measure_throughput  # noqa: F401 - measure_throughput: re-exported
from .prompts import LengthDist, sample_lengths
from .results import new_result, record, run_entry, set_statuses, summarize, timing_from_wire
from .runner import Reporter, Round, run_contestants
from .spec import EngineSpec


def run_throughput(
    specs: Sequence[EngineSpec],
    model: str,
    *,
    num_prompts: int = 32,
    input_len: LengthDist = LengthDist(128),
    output_len: LengthDist = LengthDist(128),
    batch_sizes: Sequence[int] = (1, 8, 32),
    repeats: int = 2,
    warmup: bool = True,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    interleave: bool = False,
    isolate: bool = True,
    reporter: Reporter | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Measure each contestant's offline throughput at each batch size."""
    if num_prompts < 1 or repeats < 1 or not batch_sizes or min(batch_sizes) < 1:
        raise ValueError("num_prompts, repeats and every batch size must be >= 1")
    fixed_length_params(output_len.mean, params)  # reject a bad --param before loading
    lengths = sample_lengths(num_prompts, input_len, output_len, seed)
    sizes = list(dict.fromkeys(int(b) for b in batch_sizes))
    parameters = {
        "model": model, "engines": [s.to_dict() for s in specs], "num_prompts": num_prompts,
        "input_len": input_len.to_dict(), "output_len": output_len.to_dict(),
        "batch_sizes": sizes, "repeats": repeats, "warmup": warmup, "seed": seed,
        "params": dict(params or {}), "interleave": interleave, "isolate": isolate,
        "prompt_source": "token slices of unillm/bench/data/corpus.txt",
    }
    result = new_result("throughput", parameters, command)

    def rounds(spec: EngineSpec) -> list[Round]:
        out = []
        for rep in range(repeats):
            for b in sizes:
                payload = {"lengths": lengths, "batch_size": b, "seed": seed,
                           "params": dict(params or {}),
                           "warmup": warmup and rep == 0 and b == sizes[0]}
                out.append(Round("throughput", payload, num_prompts))
        return out

    outcomes = run_contestants(specs, model, rounds, interleave=interleave, isolate=isolate,
                               reporter=reporter)
    for outcome in outcomes:
        run = run_entry(outcome, model)
        by_size: dict[int, list[tuple[int, dict[str, Any]]]] = {b: [] for b in sizes}
        for k, output in enumerate(outcome.outputs):
            by_size[sizes[k % len(sizes)]].append((k // len(sizes), output))
        for b in sizes:
            if not by_size[b]:
                continue
            timings, records, mismatches, repeats_out = [], [], [], []
            for rep, output in by_size[b]:
                repeats_out.append(output["run"])
                for req in output["requests"]:
                    t = timing_from_wire(req["timing"])
                    timings.append(t)
                    records.append(record(t, repeat=rep, index=req["index"],
                                          expected_output_tokens=req["expected"],
                                          finish_reason=req["finish_reason"]))
                    if t.output_tokens != req["expected"]:
                        mismatches.append({"repeat": rep, "index": req["index"],
                                           "expected": req["expected"],
                                           "output_tokens": t.output_tokens})
            figures = {}
            for name in ("wall", "output_throughput", "total_throughput", "request_throughput"):
                s = Summary.of(r[name] for r in repeats_out if r[name] is not None)
                figures[name] = s.to_dict() if s else None
            run["points"].append({
                "batch_size": b, "requests": len(timings),
                "expected_output_tokens": "per request" if output_len.spread else output_len.mean,
                "mismatches": mismatches, "run": figures, "repeats": repeats_out,
                "metrics": summarize(timings), "records": records,
            })
        result["runs"].append(run)
    return set_statuses(result)
