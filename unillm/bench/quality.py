"""`bench quality`: how good each engine and quantization is, next to how fast.

A faster engine or a 4-bit model is a win only if its output is still good. For every
contestant, in its own worker, this measures:

- perplexity on a shipped text (bench/data/corpus.txt, the synthetic prompts' source), with
  `Generator.score_rolling`, and how far it is from the reference's (``perplexity_gap``, the
  ratio minus one) and, where both read the same tokens, the mean absolute difference of the
  per-token log-probabilities;
- agreement with the reference engine's greedy output on the shipped prompts: for each prompt
  the share of the reference's tokens (text engines: characters) matched before the first
  difference, averaged (``agreement``), and the share of prompts matched whole (``exact``);
- optionally lm-eval tasks on local data (unillm.eval's shipped tasks, or any lm-eval task);
- speed: a batch-1 latency round (the latency bench's own job, streamed, exactly N tokens).

The reference (float32 transformers unless told otherwise) runs as a contestant too, so its
speed is on the same plot. The result is a ``quality`` result of the bench schema: one point
per run (batch_size 1, the latency metrics) with a ``quality`` record added; its plot puts each
contestant at (tokens/s, perplexity) and marks the Pareto front (quality_outputs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .jobs import fixed_length_params
from .latency import latency_point
from .prompts import corpus, latency_prompts, prompt_set_name
from .results import new_result, run_entry, set_statuses
from .runner import Reporter, Round, run_contestants
from .spec import EngineSpec

REFERENCE = EngineSpec("transformers", {"dtype": "float32"}, label="transformers-float32")
"""The default reference: the transformers engine in float32."""


def _with_reference(specs: Sequence[EngineSpec], reference: EngineSpec) -> list[EngineSpec]:
    same = [s for s in specs if s.engine == reference.engine
            and dict(s.options) == dict(reference.options) and s.model == reference.model]
    if same:
        return [same[0], *[s for s in specs if s is not same[0]]]
    return [reference, *specs]


def run_quality(
    specs: Sequence[EngineSpec],
    model: str,
    *,
    reference: EngineSpec = REFERENCE,
    text: str | None = None,
    prompts: int = 4,
    max_tokens: int = 32,
    tasks: Sequence[str] = (),
    task_limit: int | None = None,
    speed_repeats: int = 1,
    interleave: bool = False,
    isolate: bool = True,
    reporter: Reporter | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Measure quality and speed of each contestant (the reference first; see the module
    docstring) and return the result."""
    if max_tokens < 1 or speed_repeats < 1:
        raise ValueError("max_tokens and speed_repeats must be >= 1")
    contestants = _with_reference(specs, reference)
    shown = latency_prompts(prompts)
    body = text if text is not None else corpus()
    parameters = {
        "model": model, "engines": [s.to_dict() for s in contestants],
        "reference": contestants[0].label, "text": "shipped corpus" if text is None else "given",
        "text_chars": len(body), "prompt_set": prompt_set_name(), "prompts": len(shown),
        "max_tokens": max_tokens, "tasks": list(tasks), "task_limit": task_limit,
        "speed_repeats": speed_repeats, "api": "stream", "batch_size": 1,
        "sampling_params": fixed_length_params(max_tokens).model_dump(mode="json"),
        "interleave": interleave, "isolate": isolate,
    }
    result = new_result("quality", parameters, command)
    quality_payload = {"text": body, "prompts": shown, "max_tokens": max_tokens,
                       "tasks": list(tasks), "task_limit": task_limit}

    def rounds(spec: EngineSpec) -> list[Round]:
        out = [Round("quality", quality_payload, 3 if tasks else 2)]
        for r in range(speed_repeats):
            payload = {"prompts": shown, "max_tokens": max_tokens, "params": {},
                       "api": "stream", "warmup": 1 if r == 0 else 0}
            out.append(Round("latency", payload, len(shown) + (1 if r == 0 else 0)))
        return out

    outcomes = run_contestants(contestants, model, rounds, interleave=interleave,
                               isolate=isolate, reporter=reporter)
    measured = [o.outputs[0] if o.outputs else None for o in outcomes]
    for index, outcome in enumerate(outcomes):
        run = run_entry(outcome, model)
        run["reference"] = index == 0
        if outcome.outputs and len(outcome.outputs) > 1:
            run["points"].append(_point(outcome.outputs, max_tokens, measured[index],
                                        measured[0]))
        result["runs"].append(run)
    return set_statuses(result)


def _point(outputs: Sequence[Any], max_tokens: int, mine: Mapping[str, Any],
           reference: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**latency_point(outputs[1:], max_tokens), "quality": quality_figures(mine, reference)}


def quality_figures(mine: Mapping[str, Any], reference: Mapping[str, Any] | None) -> dict[str, Any]:
    """One contestant's quality record, compared with the reference's measurements."""
    rolling = mine["rolling"]
    timing = rolling.get("timing") or {}
    figures: dict[str, Any] = {
        "perplexity": rolling["perplexity"], "logprob": rolling["logprob"],
        "scored_tokens": rolling["scored"], "windows": rolling["windows"],
        "scoring_tokens_per_s": (timing["tokens"] / timing["e2e"]
                                 if timing.get("e2e") else None),
        "perplexity_gap": None, "mean_abs_logprob_diff": None, "agreement": None,
        "exact": None, "tasks": mine.get("tasks"),
    }
    if reference is None:
        return figures
    ref = reference["rolling"]
    if ref["perplexity"]:
        figures["perplexity_gap"] = rolling["perplexity"] / ref["perplexity"] - 1.0
    a, b = rolling["token_logprobs"], ref["token_logprobs"]
    if len(a) == len(b) and a:
        diffs = [abs(x - y) for x, y in zip(a, b) if x is not None and y is not None]
        figures["mean_abs_logprob_diff"] = sum(diffs) / len(diffs) if diffs else None
    shares, exact = [], 0
    for ours, theirs in zip(mine["greedy"], reference["greedy"]):
        by_ids = ours["ids"] is not None and theirs["ids"] is not None
        x, y = (ours["ids"], theirs["ids"]) if by_ids else (ours["text"], theirs["text"])
        common = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
        shares.append(common / len(y) if y else 1.0)
        exact += int(x == y)
    if shares:
        figures["agreement"] = sum(shares) / len(shares)
        figures["exact"] = exact / len(shares)
    return figures
