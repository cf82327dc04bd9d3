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


# -- quality: perplexity, greedy outputs, optional lm-eval tasks ----------------------------
def measure_quality(gen: Any, payload: Mapping[str, Any], progress) -> dict[str, Any]:
    """The model's perplexity on `text` (a rolling score), its greedy output for each of
    `prompts` (compared with a reference's by the parent), and, with `tasks`, lm-eval's
    metrics on them (unillm.eval; lm-eval must be installed where the worker runs)."""
    gen.score_rolling(payload["text"])  # a warm-up pass: the second one is timed
    start = now()
    rolling = gen.score_rolling(payload["text"])
    timing = {"e2e": now() - start, "tokens": rolling.scored}
    progress(1)
    greedy = {"max_tokens": payload["max_tokens"], "temperature": 0.0}
    if "ignore_eos" in gen.capabilities.params:
        greedy["ignore_eos"] = True  # the same number of tokens to compare on every engine
    outputs = []
    for completion in gen.generate(list(payload["prompts"]), greedy):
        outputs.append({"ids": list(completion.token_ids) if gen.capabilities.token_ids else None,
                        "text": completion.text})
    progress(1)
    tasks = None
    if payload.get("tasks"):
        tasks = _lm_eval_tasks(gen, payload["tasks"], payload.get("task_limit"))
        progress(1)
    return {
        "rolling": {"logprob": rolling.logprob, "scored": rolling.scored,
                    "unscored": rolling.unscored, "windows": rolling.windows,
                    "perplexity": rolling.perplexity,
                    "token_logprobs": list(rolling.token_logprobs), "timing": timing},
        "greedy": outputs, "greedy_params": greedy, "tasks": tasks,
    }


def _lm_eval_tasks(gen: Any, tasks: Sequence[str], limit: int | None) -> dict[str, Any]:
    import lm_eval

    from .. import eval as ueval

    ueval.register()
    result = lm_eval.simple_evaluate(model=ueval.UnillmLM(generator=gen, batch_size=16),
                                     tasks=list(tasks), task_manager=ueval.task_manager(),
                                     limit=limit)
    return {task: {k: v for k, v in figures.items() if "," in k and "stderr" not in k}
            for task, figures in result["results"].items()}


JOBS = {"latency": measure_latency, "throughput": measure_throughput,
        "quality": measure_quality}
"""The measurement jobs a worker runs, by the name a `Round` gives."""
