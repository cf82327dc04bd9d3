"""A prompt made ready to run: validated, tokenized and planned (`Prepared`).

Every check a call makes of its input happens here, before any engine work, so a server can
refuse a request when it arrives and run the prompts it accepted later, in one batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypedDict

from .decoding import SampleTracker, decoder
from .engine import Engine, EngineRequest
from .errors import (
    ContextLengthError,
    EngineError,
    InvalidParameterError,
    InvalidPromptError,
    UnsupportedParameterError,
)
from .params import SamplingParams
from .planning import Plan, plan

if TYPE_CHECKING:
    from .tools.plan import ToolPlan
    from .tools.request import ToolRequest


class TokensPrompt(TypedDict):
    """A prompt given as token ids instead of text: ``{"prompt_token_ids": [...]}``."""

    prompt_token_ids: list[int]


PromptLike = str | TokensPrompt
Messages = Sequence[Mapping[str, Any]]
ParamsLike = SamplingParams | Mapping[str, Any]


@dataclass(eq=False)
class Prepared:
    """One prompt of a call: its plan and the engine requests that serve it (one per emulated
    sample of `n`, else one).

    `Generator.prepare` hands one out so that a caller (a server) can validate and tokenize a
    prompt when it arrives and run it later, in a batch with others. Its engine requests carry
    per-run state (abort flags, stop trackers), so it runs once.
    """

    params: SamplingParams
    plan: Plan
    requests: list[EngineRequest]
    prompt: str | None = None
    prompt_ids: list[int] | None = None
    claimed: bool = False
    compile_s: float | None = None  # with `structured`: compiling it here (a cache hit: ~0)
    tools: ToolPlan | None = None  # a chat call with tools (docs/tools.md)
    prompt_logprobs: list[Any] | None = None  # emulated `prompt_logprobs`, once scored

    @property
    def batch_key(self) -> tuple[SamplingParams, ...]:
        """Prepared prompts with equal keys can share one native batch on any engine
        (engines with ``batch_params="uniform"`` need equal engine parameters)."""
        return tuple(r.params for r in self.requests)

    def claim(self) -> Prepared:
        """Mark this prompt as running; a second run is an error (its state is spent)."""
        if self.claimed:
            raise InvalidPromptError("a prepared prompt runs once: prepare() it again")
        self.claimed = True
        return self


def as_params(params: ParamsLike | None) -> SamplingParams:
    """`SamplingParams` from itself, a dict of its fields (validated the same way), or None
    (the defaults)."""
    if params is None:
        return SamplingParams()
    if isinstance(params, SamplingParams):
        return params
    if isinstance(params, Mapping):
        return SamplingParams(**params)
    raise InvalidParameterError(
        "params", type(params).__name__,
        "a SamplingParams, a dict of its fields, or None", owner="generate",
    )


def per_prompt_params(params: ParamsLike | Sequence[ParamsLike] | None,
                      count: int) -> list[SamplingParams]:
    """One `SamplingParams` per prompt: the same for all, or one each (lengths must match)."""
    if params is None or isinstance(params, (SamplingParams, Mapping)) \
            or not isinstance(params, Sequence) or isinstance(params, str):
        return [as_params(params)] * count
    per = [as_params(p) for p in params]
    if len(per) != count:
        raise ValueError(f"got {count} prompts but {len(per)} SamplingParams")
    return per


def _prompt_ids(engine: Engine, engine_name: str, prompt: PromptLike | None,
                messages: Messages | None, tools: ToolPlan | None = None,
                ) -> tuple[str | None, list[int] | None, list[dict[str, Any]] | None]:
    """(prompt text, prompt ids, messages for a chat engine), as the engine takes them."""
    caps = engine.capabilities
    tok = engine.tokenizer
    if messages is not None:
        if caps.chat:
            return None, None, [dict(m) for m in messages]
        if tok is None:
            raise InvalidPromptError(f"engine {engine_name!r} has no tokenizer for chat")
        if tools is not None:
            from .tools.messages import chat_ids

            return None, chat_ids(tok, messages, tools.request.definitions), None
        return None, tok.chat_token_ids(messages), None
    if tools is not None and tools.mode == "server":
        raise InvalidPromptError("tools need a conversation (messages) on engine "
                                 f"{engine_name!r}: its server renders them")
    if isinstance(prompt, str):
        if not caps.token_ids:
            return prompt, None, None
        if tok is None:  # pragma: no cover - an engine contract violation
            raise EngineError(engine_name, "a token-id engine without a tokenizer")
        return prompt, tok.encode(prompt), None
    if isinstance(prompt, Mapping) and "prompt_token_ids" in prompt:
        if not caps.token_ids:
            raise InvalidPromptError(f"engine {engine_name!r} takes text prompts, not token ids")
        return None, [int(i) for i in prompt["prompt_token_ids"]], None
    raise InvalidPromptError(
        "a prompt is a string or {'prompt_token_ids': [...]}, not " f"{type(prompt).__name__}"
    )


def prepare(engine: Engine, engine_name: str, prompt: PromptLike | None, params: SamplingParams,
            messages: Messages | None = None, tools: ToolRequest | None = None) -> Prepared:
    """Plan `params` for the engine, tokenize the prompt (or conversation), check it fits the
    context, and build the engine requests. With `tools`, the conversation is rendered with
    them and `params` gain the grammar that enforces the calls, where unillm enforces them
    (`tools.plan`); a prompt given as ids is taken as already rendered with them."""
    caps = engine.capabilities
    tok = engine.tokenizer
    tool_plan = None
    if tools is not None:
        from .tools.plan import plan_tools

        tool_plan = plan_tools(engine, engine_name, tools, params)
        params = tool_plan.params
    eos = tok.eos_token_ids if tok is not None else frozenset()
    the_plan = plan(params, caps, engine_name, eos)
    compile_s = None
    if params.structured is not None and tok is not None and caps.token_ids:
        from .grammars import compile_constraint
        from .timing import now

        start = now()
        compile_constraint(params.structured, tok)  # a bad constraint fails here; cached for the run
        compile_s = now() - start
    if tok is not None and caps.token_ids:
        from .token_rules import bad_word_sequences, check_token_ids, has_rules

        if has_rules(params):  # ids outside the vocabulary, words without tokens: named here
            check_token_ids(params, getattr(tok, "vocab_size", None))
            if params.bad_words:
                bad_word_sequences(params.bad_words, tok)
        if not params.skip_special_tokens and not hasattr(tok, "decode_with_special"):
            raise UnsupportedParameterError(
                engine_name, "skip_special_tokens", False, "this engine's tokenizer cannot "
                "decode special tokens (it has no `decode_with_special`)")
    text, ids, msgs = _prompt_ids(engine, engine_name, prompt, messages, tool_plan)
    if tool_plan is not None and tool_plan.choice is not None and \
            tool_plan.choice.template is not None:
        tool_plan = replace(tool_plan, prefix=_rendered(tok, text, ids))
    if ids is not None and not ids:
        raise InvalidPromptError(
            "the prompt is empty and the tokenizer adds no start token: nothing to continue"
        )
    ctx = engine.context_length
    if ids is not None and ctx is not None and len(ids) + params.max_tokens > ctx:
        raise ContextLengthError(len(ids), params.max_tokens, ctx)

    requests = []
    for request_params in the_plan.request_params:
        req = EngineRequest(
            params=request_params, prompt=text,
            prompt_token_ids=list(ids) if ids is not None else None, messages=msgs,
            tools=tool_plan.request.openai_fields() if tool_plan is not None
            and tool_plan.mode == "server" else None,
        )
        if caps.stop_hook and the_plan.rules.active:
            decode = (decoder(tok, request_params) if caps.token_ids else tok.decode) \
                if tok is not None else None
            req.trackers = [SampleTracker(decode, the_plan.rules)
                            for _ in range(request_params.n)]
        requests.append(req)
    return Prepared(params, the_plan, requests, prompt=text, prompt_ids=ids, compile_s=compile_s,
                    tools=tool_plan)


def _rendered(tok: Any, text: str | None, ids: list[int] | None) -> str:
    """The prompt as text with its special tokens (a response template's anchors are)."""
    if text is not None:
        return text
    hf = getattr(tok, "hf", None)
    if ids is None or hf is None:
        return ""
    return hf.decode(ids, skip_special_tokens=False)
