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
    "skip_special_tokens": "unillm decodes the engine's token ids itself, keeping special "
    "tokens when it is false (engines that return token ids only)",
    "n": "unillm runs the prompt n times (seed + i for sample i when seeded; greedy samples "
    "are computed once and copied)",
}


SCORING_ENGINES = (
    "transformers (and bnb, gptq, torchao), ctranslate2, vllm, llamacpp, tgi, and openai with "
    "server='vllm' or 'llama-cpp-python'"
)
"""The engines that can score text, for refusals (docs/scoring.md has the table)."""

WHO_CAN = {
    "structured": "the transformers (and bnb, gptq, torchao), llamacpp and vllm engines "
    "constrain every kind natively; docs/structured.md has the table of every engine",
    "logit_bias": "the transformers, llamacpp and vllm engines apply it natively, and the "
    "openai engine on servers that have the field (docs/structured.md, \"Token rules\")",
    "allowed_token_ids": "the transformers, llamacpp and vllm engines apply it natively, and "
    "the openai engine on a vLLM server (docs/structured.md, \"Token rules\")",
    "bad_words": "the transformers, llamacpp and vllm engines apply it natively, and the "
    "openai engine on a vLLM server (docs/structured.md, \"Token rules\")",
}
"""Which engines can do what unillm cannot emulate, so a refusal helps choose another."""

NOT_EMULATED = {
    "structured": "unillm cannot constrain an engine's tokens from outside it",
    "logit_bias": "unillm cannot change an engine's logits from outside it",
    "allowed_token_ids": "unillm cannot change an engine's logits from outside it",
    "bad_words": "unillm cannot change an engine's logits from outside it",
}
"""Why a field cannot be emulated, when the engine gives no reason of its own."""

BANS = ("allowed_token_ids", "bad_words")
"""Token rules that take tokens away: with a constraint they could leave it no token to go on
with, which engines answer differently (an error, an arbitrary token), so they are refused
together; the constraint itself can say what it excludes."""


def _refusal(caps: Capabilities, name: str) -> str:
    """The reason an engine refuses `name`: its own note, else why unillm cannot emulate it,
    then which engines can."""
    reason = caps.notes.get(name) or NOT_EMULATED.get(name, "")
    who = WHO_CAN.get(name)
    return f"{reason}; {who}" if reason and who else reason or who or ""


def _check_structured(params: SamplingParams, caps: Capabilities, engine: str) -> None:
    """A constraint's own rules: what it cannot be combined with, and which kinds and JSON
    whitespace this engine enforces exactly."""
    s = params.structured
    if s is None:
        return
    for name in ("ignore_eos", "min_tokens", *BANS):
        value = getattr(params, name)
        if value:
            reason = ("it would force tokens past the constraint's end, so the output could "
                      "not be valid" if name in ("ignore_eos", "min_tokens") else
                      "a ban can leave the constraint no token to continue with, which engines "
                      "answer differently; write the exclusion into the constraint instead")
            raise UnsupportedParameterError(engine, name, value,
                                            f"together with `structured`: {reason}")
    if "structured" not in caps.params:
        return
    if s.kind not in caps.structured_kinds:
        exact = ", ".join(sorted(caps.structured_kinds)) or "no kind"
        raise UnsupportedParameterError(
            engine, "structured", {s.kind: _short(getattr(s, s.kind))},
            f"{caps.notes.get('structured', 'this engine cannot enforce it exactly')} (exact "
            f"here: {exact}); {WHO_CAN['structured']}")
    if s.kind == "json_schema" and s.whitespace not in caps.structured_whitespace:
        allowed = "/".join(sorted(caps.structured_whitespace))
        raise UnsupportedParameterError(
            engine, "structured.whitespace", s.whitespace,
            f"{caps.notes.get('structured.whitespace', 'this engine cannot enforce it')}; "
            f"pass whitespace={allowed!r} here, or use an engine that enforces "
            f"{s.whitespace!r} (transformers and llamacpp enforce both)")
    for name in sorted(caps.not_with_structured):
        value = getattr(params, name)
        if value != SamplingParams.model_fields[name].default:
            raise UnsupportedParameterError(
                engine, name, value, "together with `structured` on this engine: "
                f"{caps.notes.get(name + '+structured', 'it cannot apply both')}")


def _short(value: object) -> object:
    text = str(value)
    return value if len(text) <= 80 else text[:77] + "..."


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
    _check_structured(params, caps, engine)
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
    for name, value in params.non_default_fields().items():
        if name == "skip_special_tokens" and caps.token_ids:
            # The core decodes every token-id engine's ids (decoding.decoder), whatever the
            # engine declares; the engine still gets the field (vLLM's stop strings see it).
            emulated.append(name)
            continue
        if name in caps.params or name == "prompt_logprobs":
            continue
        if name in EMULATED_BY_CORE:
            emulated.append(name)
            continue
        raise UnsupportedParameterError(engine, name, value, _refusal(caps, name))
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
        if "skip_special_tokens" in emulated:
            raise UnsupportedParameterError(
                engine, "skip_special_tokens", params.skip_special_tokens,
                caps.notes.get("skip_special_tokens") or "this engine returns text that its "
                "server decoded without special tokens, and unillm cannot put them back; every "
                "engine that returns token ids keeps them, and so does the openai engine with "
                "server='vllm' or 'sglang'",
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


TOOL_CONSTRAINING_ENGINES = "the transformers, llamacpp and vllm engines"


def tool_mode(choice: str, caps: Capabilities, engine: str, params: SamplingParams) -> str:
    """How a chat call with tools runs (docs/tools.md): ``server`` (a chat engine's server
    renders and parses them), ``constrained`` (unillm renders, enforces with a grammar and
    parses), ``parsed`` (unillm renders and parses; the engine cannot constrain), ``none``
    (rendered, no call wanted). `choice` is ``auto``, ``none``, ``required`` or ``function``.
    """
    if caps.chat:
        if not caps.tools:
            raise UnsupportedParameterError(
                engine, "tools", "[...]", "this engine does not send tools to its server; the "
                "openai engine does (or use a local engine)", owner="Generator.chat")
        return "server"
    if choice != "none" and params.structured is not None:
        raise UnsupportedParameterError(
            engine, "structured", params.structured.kind, "together with tools: the reply is "
            "either tool calls or text, and a tool's arguments already follow its schema; "
            "leave structured unset, or set tool_choice='none'")
    if choice == "none":
        return "none"
    # Tool calls are enforced with a grammar: an engine that constrains only some kinds
    # (CTranslate2: choice) cannot enforce them.
    constrains = "structured" in caps.params and "grammar" in caps.structured_kinds
    if choice in ("required", "function") and not constrains:
        raise UnsupportedParameterError(
            engine, "tool_choice", choice if choice == "required" else "{a named function}",
            "this engine cannot constrain its tokens, so a tool call could not be "
            f"guaranteed; {TOOL_CONSTRAINING_ENGINES} can, or use tool_choice='auto'",
            owner="Generator.chat")
    return "constrained" if constrains else "parsed"


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
