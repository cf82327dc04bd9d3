"""Deciding, per request, what the engine does and what unillm emulates.

This is the only place that reads `Capabilities` against `SamplingParams`, so the rule "native
if the engine can, emulated if unillm can, otherwise an error, never silence" is written once.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from .decoding import StopRules
from .engine import EMULATED_BY_CORE, Capabilities, EngineRequest
from .errors import UnsupportedParameterError
from .params import SEED_MAX, SamplingParams

EMULATION_NOTES = {
    "stop": "unillm matches stop strings on the decoded text and stops the sample",
    "stop_token_ids": "unillm stops the sample at the first stop token",
    "n": "unillm runs the prompt n times (seed + i for sample i when seeded; greedy samples "
    "are computed once and copied)",
}


SCORING_ENGINES = (
    "transformers (and bnb, gptq, torchao), ctranslate2, vllm, llamacpp, tgi, and openai with "
    "server='vllm' or 'llama-cpp-python'"
)
"""The engines that can score text, for refusals (docs/scoring.md has the table)."""

NOT_EMULATED = {
    "structured": "this engine has no way to constrain its tokens; the transformers, llamacpp "
    "and vllm engines constrain natively (docs/structured.md has the table)",
}
"""Why a field cannot be emulated, where a reason helps the caller choose another engine."""


@dataclass(frozen=True)
class Plan:
    """How one prompt is run: the params the engine gets, and what unillm adds around it."""

    engine_params: SamplingParams  # what the engine is asked to honour (plans are cached:
    # everything here is immutable)
    rules: StopRules  # stop conditions unillm applies itself
    request_params: tuple[SamplingParams, ...]  # one engine request per entry (emulated n:
    # one per sample)
    copies: int  # greedy n > 1: the single sample is repeated this many times
    emulated: tuple[str, ...]


@functools.lru_cache(maxsize=1024)
def plan(
    params: SamplingParams, caps: Capabilities, engine: str, eos_token_ids: frozenset[int]
) -> Plan:
    emulated: list[str] = []
    changes: dict[str, object] = {}
    if params.prompt_logprobs is not None and "prompt_logprobs" not in caps.params:
        # Emulated by scoring the prompt (`Engine.score`), which needs its token ids.
        if not (caps.score and caps.token_ids):
            why = ("it returns text without the prompt's token ids; Generator.score scores "
                   "text on it" if caps.score else refusal_reason(caps))
            raise UnsupportedParameterError(engine, "prompt_logprobs", params.prompt_logprobs,
                                            why)
        emulated.append("prompt_logprobs")
        changes["prompt_logprobs"] = None
    if params.structured is not None:
        for name in ("ignore_eos", "min_tokens"):
            value = getattr(params, name)
            if value:
                raise UnsupportedParameterError(
                    engine, name, value, "together with `structured`: it would force tokens "
                    "past the constraint's end, so the output could not be valid")
    for name, value in params.non_default_fields().items():
        if name in caps.params or name == "prompt_logprobs":
            continue
        if name in EMULATED_BY_CORE:
            emulated.append(name)
            continue
        raise UnsupportedParameterError(engine, name, value, NOT_EMULATED.get(name, ""))
    for name, low, high in caps.limits:
        value = getattr(params, name)
        if not low <= value <= high:
            raise UnsupportedParameterError(
                engine, name, value, f"this engine accepts {low} <= {name} <= {high} only")

    if not caps.token_ids:
        # Text engines (HTTP servers) send text, not ids: unillm can match stop strings in it,
        # but neither see stop tokens nor tell where the first min_tokens tokens end.
        if "stop_token_ids" in emulated:
            raise UnsupportedParameterError(
                engine, "stop_token_ids", params.stop_token_ids,
                "this engine returns text without token ids, so unillm cannot stop on them",
            )
        if "stop" in emulated and params.min_tokens > 0:
            raise UnsupportedParameterError(
                engine, "min_tokens", params.min_tokens,
                "together with stop strings that unillm matches itself: the engine returns "
                "text without token ids, so unillm cannot tell which text the first "
                "min_tokens tokens are",
            )

    if "stop" in emulated:
        changes["stop"] = ()
    if "stop_token_ids" in emulated:
        changes["stop_token_ids"] = ()

    copies = 1
    runs = 1
    if params.n > 1 and params.is_greedy:
        # Greedy samples are identical by definition: compute one, copy it.
        copies = params.n
        changes["n"] = 1
        if "n" not in emulated:
            emulated.append("n")
    elif "n" in emulated:
        runs = params.n
        changes["n"] = 1

    engine_params = params.replace(**changes) if changes else params
    if runs > 1 and params.seed is not None:
        request_params = tuple(
            engine_params.replace(seed=(params.seed + i) % (SEED_MAX + 1)) for i in range(runs)
        )
    else:
        request_params = (engine_params,) * runs

    # A text engine that matches stop strings itself and defers them by min_tokens has applied
    # both already; matching its text again would ignore min_tokens (unillm cannot tell which
    # text the first min_tokens tokens are without ids).
    rematch = caps.token_ids or "stop" in emulated or params.min_tokens == 0
    rules = StopRules(
        # Stop strings are matched here even when the engine stops at them natively: the ids it
        # returns still contain the string, engines disagree on which of several strings wins,
        # and a stream must hold back text that may turn out to be one. On text an engine has
        # already cut, matching again changes nothing.
        stop=params.stop if rematch else (),
        stop_token_ids=frozenset(params.stop_token_ids) if "stop_token_ids" in emulated
        else frozenset(),
        min_tokens=params.min_tokens,
        terminators=eos_token_ids | frozenset(params.stop_token_ids),
    )
    return Plan(engine_params, rules, request_params, copies, tuple(sorted(emulated)))


def batch_groups(requests: Sequence[EngineRequest], caps: Capabilities) -> list[list[int]]:
    """Which requests go to the engine in one call (indices, in order): all of them if the
    engine mixes parameters in a batch (``per_request``), else one call per distinct
    `SamplingParams`. The `Generator` and each Ray replica (for its share of a batch) group
    the same way."""
    if not requests:
        return []
    if caps.batch_params == "per_request":
        return [list(range(len(requests)))]
    groups: dict[SamplingParams, list[int]] = {}
    for i, request in enumerate(requests):
        groups.setdefault(request.params, []).append(i)
    return list(groups.values())


def refusal_reason(caps: Capabilities) -> str:
    """Why an engine cannot score text, and which can."""
    why = caps.score_refusal or "it cannot return the log-probabilities of given text"
    return f"{why}; engines that can: {SCORING_ENGINES}"


def check_score(caps: Capabilities, engine: str) -> None:
    """Refuse `Generator.score` (and rolling scores) on an engine that cannot score, saying why
    and which engines can: the same rule as an unsupported sampling field, never a wrong or
    silently empty answer."""
    if not caps.score:
        raise UnsupportedParameterError(
            engine, "score", message=f"engine {engine!r} cannot score text (Generator.score): "
            f"{refusal_reason(caps)}")
