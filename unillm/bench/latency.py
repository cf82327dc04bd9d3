"""`bench latency`: batch 1, the shipped prompt set, exactly N output tokens on every engine.

Every request asks for `max_tokens=N` with `ignore_eos=True`, and every completion is checked
to hold exactly N tokens: an engine that stops early or runs long has done different work, and
the run says so (status ``mismatch``, each offending request listed) instead of comparing it.
Requests are streamed by default, so TTFT and ITL are what a caller receives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .jobs import fixed_length_params, measure_latency  # noqa: F401 - measure_latency: re-exported
from .prompts import latency_prompts, prompt_set_name
from .results import new_result, record, run_entry, set_statuses, summarize, timing_from_wire
from .runner import Reporter, Round, run_contestants
from .spec import EngineSpec

APIS = ("stream", "generate")

FULL_WORKLOAD: dict[str, Any] = {"max_tokens": 200, "prompts": None, "warmup": 2, "repeats": 3}
"""The recorded workload (docs/bench.md) and `run_latency`'s defaults: every prompt of the
shipped set (16) x 3 passes, 200 tokens each, 2 warm-up requests. ``unillm bench latency --full``."""
QUICK_WORKLOAD: dict[str, Any] = {"max_tokens": 64, "prompts": 4, "warmup": 1, "repeats": 2}
"""What ``unillm bench latency`` runs without --full: 4 prompts x 2 passes, 64 tokens, 1 warm-up,
about 1/17 of the full work, so that every installed engine is measured in a few minutes on a
2-core machine. Each of --max-tokens, --prompts, --warmup, --repeats overrides either."""


def run_latency(
    specs: Sequence[EngineSpec],
    model: str,
    *,
    max_tokens: int = 200,
    prompts: int | None = None,
    warmup: int = 2,
    repeats: int = 3,
    api: str = "stream",
    params: Mapping[str, Any] | None = None,
    interleave: bool = False,
    isolate: bool = True,
    reporter: Reporter | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Measure each contestant at batch 1 and return the result (schema in `results`)."""
    if api not in APIS:
        raise ValueError(f"api = {api!r} is not allowed: one of {', '.join(APIS)}")
    if repeats < 1 or warmup < 0 or max_tokens < 1:
        raise ValueError("repeats must be >= 1, warmup >= 0 and max_tokens >= 1")
    fixed_length_params(max_tokens, params)  # reject a bad --param before loading anything
    texts = latency_prompts(prompts)
    parameters = {
        "model": model, "engines": [s.to_dict() for s in specs], "max_tokens": max_tokens,
        "prompt_set": prompt_set_name(), "prompts": len(texts), "warmup": warmup,
        "repeats": repeats, "api": api, "batch_size": 1,
        "sampling_params": fixed_length_params(max_tokens, params).model_dump(mode="json"),
        "interleave": interleave, "isolate": isolate,
    }
    result = new_result("latency", parameters, command)

    def rounds(spec: EngineSpec) -> list[Round]:
        out = []
        for r in range(repeats):
            w = warmup if r == 0 else 0
            payload = {"prompts": texts, "max_tokens": max_tokens, "params": dict(params or {}),
                       "api": api, "warmup": w}
            out.append(Round("latency", payload, len(texts) + w))
        return out

    outcomes = run_contestants(specs, model, rounds, interleave=interleave, isolate=isolate,
                               reporter=reporter)
    for outcome in outcomes:
        run = run_entry(outcome, model)
        point = latency_point(outcome.outputs, max_tokens)
        if outcome.outputs:
            run["engine_params"] = outcome.outputs[0].get("engine_params")
        if point["requests"] or not outcome.error:
            run["points"].append(point)
        result["runs"].append(run)
    return set_statuses(result)


def latency_point(outputs: Sequence[Mapping[str, Any]], max_tokens: int) -> dict[str, Any]:
    """The batch-1 point of a contestant's latency rounds (each a worker's output): every
    request's timing summarized and recorded, and those that did not give exactly
    `max_tokens` tokens listed as mismatches. `unillm bench quality` measures speed the same
    way."""
    timings, records, mismatches = [], [], []
    for rnd, output in enumerate(outputs):
        for req in output["requests"]:
            timing = timing_from_wire(req["timing"])
            timings.append(timing)
            records.append(record(timing, round=rnd, prompt_index=req["prompt_index"],
                                  finish_reason=req["finish_reason"]))
            if timing.output_tokens != max_tokens:
                mismatches.append({"round": rnd, "prompt_index": req["prompt_index"],
                                   "output_tokens": timing.output_tokens,
                                   "finish_reason": req["finish_reason"]})
    return {"batch_size": 1, "requests": len(timings), "expected_output_tokens": max_tokens,
            "mismatches": mismatches, "metrics": summarize(timings), "records": records}
