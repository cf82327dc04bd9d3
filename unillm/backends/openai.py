"""Any OpenAI-compatible server: vLLM, SGLang, llama.cpp, llama-cpp-python, MLC, TGI's /v1,
hosted endpoints. Prompts go to ``/completions``, conversations to ``/chat/completions``.

The server's flavour (`server=`, see `_profiles.py`) decides which SamplingParams it honours;
anything else raises UnsupportedParameterError before a request is sent. Every sampling field
the server has is sent explicitly. Timing is measured here, on the client, as the caller sees
tokens (METRICS.md); token counts are the server's own (`usage`) where it reports them.

`n` is always run by unillm as n requests (seed + i for sample i), so each sample has its own
exact token count and is the same as a single request with that seed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

from pydantic import Field

from ..engine import (
    Capabilities,
    EngineRequest,
    EngineResult,
    EngineSequence,
    ScoreRequest,
    ScoreResult,
    TokenEvent,
)
from ..errors import EngineError, InvalidParameterError, ServerError
from ..hookspecs import hookimpl
from ..params import SamplingParams
from ..results import ToolCall
from ..tools.accumulate import ToolCallAccumulator
from .http import HTTPClient, HTTPEngine, HTTPOptions
from ._profiles import PROFILES, Profile
from ._server_constraints import SERVER_WHITESPACE, check_compiles

ServerName = Literal["openai", "vllm", "sglang", "llama-cpp-python", "llama.cpp", "mlc"]

RESERVED = frozenset({"model", "prompt", "messages", "stream", "stream_options", "n",
                      "max_tokens", "temperature", "top_p", "presence_penalty",
                      "frequency_penalty", "seed", "stop", "logit_bias", "allowed_token_ids",
                      "bad_words", "response_format", "structured_outputs", "tools",
                      "tool_choice", "parallel_tool_calls"})
CONSTRAINT_FIELDS = frozenset({"grammar", "json_schema", "regex", "ebnf", "guided_json",
                               "guided_regex", "guided_choice", "guided_grammar"})
"""Servers' constraint fields: with `structured`, extra_body may not set them as well."""


class OpenAIOptions(HTTPOptions):
    base_url: str = Field(
        "http://127.0.0.1:8000/v1",
        description="the server's OpenAI API root, including /v1 (e.g. http://host:8000/v1)",
    )
    server: ServerName = Field(
        "openai", description="the server's flavour: which sampling fields it accepts "
        "(docs/engines/http.md lists each)",
    )
    probe: bool = Field(True, description="check at load that the server answers GET /models")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="fields added to every request body (server-specific "
        "options outside SamplingParams)",
    )
    vocab_size: int | None = Field(
        None, ge=1, description="the model's vocabulary size, if known: a top_k at or above it "
        "filters nothing and is sent as off (llama.cpp draws differently under any top_k)",
    )


def server_calls(items: Any) -> list[ToolCall] | None:
    """A whole message's ``tool_calls`` (positions as indices, arguments as JSON text)."""
    if not items:
        return None
    calls = ToolCallAccumulator()
    calls.feed([{**c, "index": i} for i, c in enumerate(items) if isinstance(c, dict)])
    return calls.calls()


def _finish(engine: str, reason: Any) -> str:
    """The server's finish_reason in unillm's terms (``stop`` or ``length``)."""
    if reason == "length":
        return "length"
    if reason in ("abort", "error"):
        raise EngineError(engine, f"the server ended the request with finish_reason {reason!r}")
    return "stop"  # stop, eos_token, content_filter, tool_calls (unillm says tool_calls
    # itself where the reply holds calls)


class OpenAIProtocol:
    """The OpenAI completion schema for one server profile: the request body built from an
    EngineRequest, and the response (whole or streamed) read back into unillm's terms. Shared
    by the HTTP engine and by MLC's in-process engine, whose Python API speaks the same schema.
    """

    def __init__(self, engine: str, profile: Profile, extra_body: dict[str, Any] | None = None,
                 vocab_size: int | None = None):
        self.engine = engine
        self.profile = profile
        self.extra_body = dict(extra_body or {})
        self.vocab_size = vocab_size
        controlled = RESERVED | set(profile.extra(SamplingParams()))
        clash = sorted(controlled & set(self.extra_body))
        if clash:
            raise InvalidParameterError(
                "extra_body", self.extra_body,
                f"fields unillm sets itself cannot be overridden: {', '.join(clash)}",
                owner=f"{engine} engine option",
            )

    def capabilities(self, *, concurrent: bool, tools: bool = False) -> Capabilities:
        profile = self.profile
        params = {"max_tokens", "temperature"} | set(profile.params)
        if profile.constraint_kinds:
            params.add("structured")
        missing = f"{profile.title} has no request field for it"
        return Capabilities(
            params=frozenset(params), batch_params="per_request", token_ids=False, chat=True,
            stop_hook="stop" not in params, concurrent=concurrent, tools=tools,
            limits=self.profile.limits,
            structured_kinds=profile.constraint_kinds,
            structured_whitespace=frozenset({"flexible"}),
            notes={"structured": profile.constraint_note if profile.constraint_kinds
                   else missing, "structured.whitespace": SERVER_WHITESPACE,
                   **{f: missing for f in ("logit_bias", "allowed_token_ids", "bad_words")}},
            score=self.profile.echo_scores,
            score_refusal=f"server={self.profile.name!r}: {self.profile.score_refusal}",
        )

    def body(self, model: str, request: EngineRequest,
             stream: bool) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(the route, ``completions`` or ``chat/completions``; the request body; the record
        of what was sent, which the request's `EngineResult.received` reports)."""
        p = request.params
        if self.vocab_size is not None and p.top_k is not None and p.top_k >= self.vocab_size:
            p = p.replace(top_k=None)  # keeps every token: "off", the same draw as no top_k
        body: dict[str, Any] = {"model": model}
        if request.messages is not None:
            path = "chat/completions"
            body["messages"] = request.messages
            if request.tools:  # sent as given: the server renders, enforces and parses them
                body.update(request.tools)
        else:
            path = "completions"
            body["prompt"] = request.prompt if request.prompt is not None else ""
        sampling: dict[str, Any] = {
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "presence_penalty": p.presence_penalty,
            "frequency_penalty": p.frequency_penalty,
            "n": 1,
        }
        if p.seed is not None:
            sampling["seed"] = p.seed
        if p.stop:  # present only when the server matches stops itself (profile.stop_field)
            sampling["stop"] = list(p.stop)
        sampling.update(self.profile.extra(p))
        sampling.update(self.extra_body)
        if p.structured is not None:  # the planner admitted its kind for this profile
            sampling.update(self._constraint(p, request.messages is not None))
        body.update(sampling)
        body["stream"] = stream
        if stream and self.profile.stream_usage:
            body["stream_options"] = {"include_usage": True}
            if self.profile.chunk_usage:
                body["stream_options"]["continuous_usage_stats"] = True
        received = {"endpoint": "/" + path, "server": self.profile.name, **sampling}
        if request.messages is not None and request.tools:
            received["tool_choice"] = request.tools.get("tool_choice")
        return path, body, received

    def _constraint(self, p: SamplingParams, chat: bool) -> dict[str, Any]:
        """The constraint in the server's own fields (`_server_constraints.py`)."""
        clash = sorted(CONSTRAINT_FIELDS & set(self.extra_body))
        if clash:
            raise InvalidParameterError(
                "extra_body", self.extra_body, f"no constraint fields ({', '.join(clash)}) "
                "together with SamplingParams.structured", owner=f"{self.engine} engine option")
        check_compiles(p.structured)
        return self.profile.constraint(p.structured, chat)  # type: ignore[misc]

    def stop_reason(self, choice: dict[str, Any]) -> Any:
        field = self.profile.stop_field
        return choice.get(field) if field else None

    def count(self, completion_tokens: int | None, finish: str, stop_reason: Any) -> int | None:
        """The server's output token count in unillm's terms (the eos token included)."""
        if completion_tokens is None:
            return None
        if not self.profile.counts_eos and finish == "stop" and stop_reason is None:
            return completion_tokens + 1
        return completion_tokens

    def result(self, response: dict[str, Any], received: dict[str, Any]) -> EngineResult:
        """A whole (non-streamed) response."""
        choices = response.get("choices") or []
        if not choices:
            raise EngineError(self.engine, f"the server returned no choices: {str(response)[:200]}")
        choice = choices[0]
        usage = response.get("usage") or {}
        calls = None
        if "message" in choice:
            text = (choice.get("message") or {}).get("content") or ""
            calls = server_calls((choice.get("message") or {}).get("tool_calls"))
        else:
            text = choice.get("text") or ""
        if not self.profile.stream_keeps_partial_char:
            text = text.rstrip("\ufffd")
        finish = _finish(self.engine, choice.get("finish_reason"))
        reason = self.stop_reason(choice)
        seq = EngineSequence([], finish, reason, text=text,
                             output_tokens=self.count(usage.get("completion_tokens"), finish, reason),
                             tool_calls=calls)
        return EngineResult([seq], received=received, prompt_tokens=usage.get("prompt_tokens"))

    def reader(self, received: dict[str, Any]) -> StreamReader:
        return StreamReader(self, received)


class StreamReader:
    """Turns a stream of completion chunks into TokenEvents.

    The finishing event is held until the stream ends, because the token counts (`usage`)
    arrive in a chunk of their own after the one that carries the finish reason. `start` is
    the stream's first event (what was sent); the finishing one reports it again with the
    prompt's token count.
    """

    def __init__(self, protocol: OpenAIProtocol, received: dict[str, Any]):
        self.protocol = protocol
        self.received = received
        self.prompt_tokens: int | None = None
        self.finish: str | None = None
        self.stop_reason: Any = None
        self.output_tokens: int | None = None
        self.deltas = 0
        self.tool_calls = ToolCallAccumulator()  # the server's call pieces, by index

    def feed(self, chunk: dict[str, Any]) -> list[TokenEvent]:
        out = []
        usage = chunk.get("usage")
        tokens = None  # how many tokens this chunk's text came from, if the server says
        if usage:
            self.prompt_tokens = usage.get("prompt_tokens")
            count = usage.get("completion_tokens")
            if count is not None and self.protocol.profile.chunk_usage:  # running counts
                tokens = max(count - (self.output_tokens or 0), 0)
            self.output_tokens = count
        for choice in chunk.get("choices") or ():
            calls = None
            if "delta" in choice:
                delta = choice.get("delta") or {}
                text = delta.get("content") or ""
                calls = self.tool_calls.feed(delta.get("tool_calls")) or None
            else:
                text = choice.get("text") or ""
            if text or calls:
                self.deltas += 1
            if text or tokens or calls:
                out.append(TokenEvent(0, (), text=text, tokens=tokens, tool_calls=calls))
            if choice.get("finish_reason") is not None:
                self.finish = _finish(self.protocol.engine, choice["finish_reason"])
                self.stop_reason = self.protocol.stop_reason(choice)
        return out

    def start(self) -> TokenEvent:
        return TokenEvent(result=EngineResult(received=self.received))

    def end(self) -> TokenEvent:
        if self.finish is None:
            raise EngineError(
                self.protocol.engine,
                "the server ended the stream without a finish_reason, so the completion is "
                "incomplete (llama-cpp-python's server does this when another request arrives: "
                "start it with --interrupt_requests false)",
            )
        if self.output_tokens is not None:
            count = self.protocol.count(self.output_tokens, self.finish, self.stop_reason)
        else:  # no usage figures: one token per text chunk, plus the eos that sent no text
            eos = self.finish == "stop" and self.stop_reason is None
            count = self.deltas + (1 if eos else 0)
        return TokenEvent(0, (), finish_reason=self.finish, stop_reason=self.stop_reason,
                          output_tokens=count,
                          result=EngineResult(received=self.received,
                                              prompt_tokens=self.prompt_tokens))


class OpenAIEngine(HTTPEngine):
    """A model served behind an OpenAI-compatible HTTP API."""

    Options = OpenAIOptions

    def __init__(self, model: str, options: OpenAIOptions):
        super().__init__(model, options)
        self.protocol = OpenAIProtocol("openai", PROFILES[options.server], options.extra_body,
                                       options.vocab_size)
        self.capabilities = self.protocol.capabilities(concurrent=True, tools=True)
        self.client = HTTPClient("openai", options)
        self.server_models: list[str] | None = None
        if options.probe:
            self.server_models = [m.get("id") for m in self._probe("models").get("data", [])]
        if not self.model:
            if not self.server_models:
                self.client.close()
                raise EngineError(self.name, "no model given and the server lists none at "
                                             f"{self.client.url('models')}: pass the model name")
            self.model = self.server_models[0]

    def _complete(self, request: EngineRequest) -> EngineResult:
        path, body, received = self.protocol.body(self.model, request, stream=False)
        return self.protocol.result(self.client.post_json(path, body), received)

    async def _acomplete(self, request: EngineRequest) -> EngineResult:
        path, body, received = self.protocol.body(self.model, request, stream=False)
        return self.protocol.result(await self.client.apost_json(path, body), received)

    # -- scoring (echo + logprobs: openai_scoring.py) ---------------------------------------
    def _scorer(self):
        if getattr(self, "_echo", None) is None:
            from .openai_scoring import EchoScorer

            self._echo = EchoScorer(self.name or "openai", self.protocol.profile, self.model)
        return self._echo

    def _context_tokens(self, scorer, context: str) -> int:
        """The server's token count of `context` (cached); an empty prompt the server fails
        on has none."""
        count = scorer.counts.get(context)
        if count is None:
            try:
                answer = self.client.post_json("completions", scorer.count_body(context))
            except ServerError:
                if context:
                    raise
                answer = None
            count = scorer.remember(context, answer)
        return count

    async def _acontext_tokens(self, scorer, context: str) -> int:
        count = scorer.counts.get(context)
        if count is None:
            try:
                answer = await self.client.apost_json("completions", scorer.count_body(context))
            except ServerError:
                if context:
                    raise
                answer = None
            count = scorer.remember(context, answer)
        return count

    def _score_one(self, request: ScoreRequest) -> ScoreResult:
        scorer = self._scorer()
        if scorer.profile.echo_needs_bos:
            self._context_tokens(scorer, "")  # refuses a model without a start token
        count = self._context_tokens(scorer, request.context or "")
        return scorer.result(request, count, self.client.post_json("completions",
                                                                   scorer.body(request)))

    async def _ascore_one(self, request: ScoreRequest) -> ScoreResult:
        scorer = self._scorer()
        if scorer.profile.echo_needs_bos:
            await self._acontext_tokens(scorer, "")
        count = await self._acontext_tokens(scorer, request.context or "")
        return scorer.result(request, count, await self.client.apost_json(
            "completions", scorer.body(request)))

    def stream(self, request: EngineRequest) -> Iterator[TokenEvent]:
        path, body, received = self.protocol.body(self.model, request, stream=True)
        reader = self.protocol.reader(received)
        yield reader.start()
        for chunk in self.client.stream_events(path, body):
            yield from reader.feed(chunk)
        yield reader.end()

    async def astream(self, request: EngineRequest) -> AsyncIterator[TokenEvent]:  # type: ignore[override]
        path, body, received = self.protocol.body(self.model, request, stream=True)
        reader = self.protocol.reader(received)
        yield reader.start()
        async for chunk in self.client.astream_events(path, body):
            for event in reader.feed(chunk):
                yield event
        yield reader.end()

    def info(self) -> dict[str, Any]:
        return {
            "base_url": self.client.base_url,
            "server": self.protocol.profile.name,
            "server_models": self.server_models,
            "native": sorted(self.capabilities.params),
        }


@hookimpl
def unillm_register_engines(register) -> None:
    register(
        "openai", OpenAIEngine, requires=("httpx",),
        description="any OpenAI-compatible server (vLLM, SGLang, llama.cpp, MLC, hosted APIs)",
    )
