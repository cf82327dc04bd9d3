"""What a worker measures: the jobs that run next to the loaded engine, and the sampling
parameters every bench fixes.

This module sits below every kind of bench: `worker` runs these jobs, and `latency`,
`throughput` and `tune` build their payloads and check their parameters with them. It imports
nothing of the bench above `results` (the wire form of a `Timing`) and `prompts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import UnillmError
from ..params import SamplingParams
from ..timing import RunTiming, now
from .prompts import token_prompts
from .results import timing_to_wire


def fixed_length_params(max_tokens: int, extra: Mapping[str, Any] | None = None) -> SamplingParams:
    """Greedy unless `extra` says otherwise; exactly `max_tokens` tokens (eos blocked)."""
    fixed = {"max_tokens": max_tokens, "ignore_eos": True}
    clash = sorted(set(extra or {}) & set(fixed) - {"max_tokens"})
    if clash or (extra and "max_tokens" in extra and extra["max_tokens"] != max_tokens):
        raise ValueError(
            f"{', '.join(clash or ['max_tokens'])} is fixed by the bench (max_tokens={max_tokens}, "
            "ignore_eos=True): every engine must produce exactly max_tokens tokens"
        )
    return SamplingParams(**{"temperature": 0.0, **(extra or {}), **fixed})


# -- latency: batch 1, one request at a time -----------------------------------------------
def _run_one(gen: Any, prompt: Any, params: SamplingParams, api: str):
    if api == "stream":
        stream = gen.stream(prompt, params)
        for _ in stream:
            pass
        return stream.completion
    return gen.generate(prompt, params)


def measure_latency(gen: Any, payload: Mapping[str, Any], progress) -> dict[str, Any]:
    """Warm-up requests (discarded), then each prompt once, one at a time."""
    params = fixed_length_params(payload["max_tokens"], payload.get("params"))
    api = payload.get("api", "stream")
    prompts: Sequence[str] = payload["prompts"]
    for i in range(payload.get("warmup", 0)):
        _run_one(gen, prompts[i % len(prompts)], params, api)
        progress(1)
    requests = []
    for index, prompt in enumerate(prompts):
        completion = _run_one(gen, prompt, params, api)
        requests.append({
            "prompt_index": index,
            "finish_reason": completion.finish_reason,
            "timing": timing_to_wire(completion.timing),
        })
        progress(1)
    return {"requests": requests, "engine_params": completion.to_dict()["engine_params"]}


# -- throughput: K prompts, B per generate call -------------------------------------------
def measure_throughput(gen: Any, payload: Mapping[str, Any], progress) -> dict[str, Any]:
    """(Optionally) one warm-up batch, then all prompts, B per `generate` call."""
    tok = gen.tokenizer
    if tok is None or not gen.capabilities.token_ids:
        raise UnillmError(
            f"bench throughput needs an engine that takes token ids; {gen.engine_name!r} does "
            "not (use `unillm bench serve` for servers)"
        )
    lengths = [tuple(x) for x in payload["lengths"]]
    ids = token_prompts(tok, [i for i, _ in lengths], seed=payload.get("seed", 0))
    prompts = [{"prompt_token_ids": p} for p in ids]
    extra = payload.get("params")
    cache: dict[int, Any] = {}
    params = [cache.setdefault(o, fixed_length_params(o, extra)) for _, o in lengths]
    size = payload["batch_size"]
    if payload.get("warmup"):
        gen.generate(prompts[:size], params[:size])
    completions = []
    start = now()
    for i in range(0, len(prompts), size):
        completions.extend(gen.generate(prompts[i:i + size], params[i:i + size]))
        progress(len(prompts[i:i + size]))
    wall = now() - start
    run = RunTiming(
        wall=wall, requests=len(completions),
        prompt_tokens=sum(len(p) for p in ids),
        output_tokens=sum(c.timing.output_tokens for c in completions),
    )
    return {
        "run": run.to_dict(),
        "requests": [
            {"index": i, "expected": lengths[i][1], "finish_reason": c.finish_reason,
             "timing": timing_to_wire(c.timing)}
            for i, c in enumerate(completions)
        ],
    }


JOBS = {"latency": measure_latency, "throughput": measure_throughput}
"""The measurement jobs a worker runs, by the name a `Round` gives."""
