"""The FastAPI app: OpenAI's routes over one `Generator`.

A request goes: JSON -> schema (400 naming the field) -> `SamplingParams` (mapping.py) ->
`Generator.prepare` (context length, unsupported parameters: 400 before any queueing) ->
scheduler (429 when its queue is full) -> chunks, sent as server-sent events or gathered into
one response. However a request ends (done, client gone, error), its tickets are closed, which
cancels unfinished generations in the engine and frees their slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from ..errors import ContextLengthError, UnillmError
from ..generator import Generator, Prepared
from ..results import Chunk, Completion
from .config import ServeConfig
from .errors import APIError, bad_request, from_unillm
from .mapping import Mapped, chat_params, completion_params
from .metrics import CONTENT_TYPE, RequestClock, ServeMetrics
from .middleware import BearerAuth, BodyLimit, StatusCounter
from .responses import (
    SSE_DONE,
    chat_chunk,
    chat_logprobs,
    chat_response,
    completion_chunk,
    completion_logprobs,
    completion_response,
    new_id,
    now_seconds,
    sse,
    token_text,
    usage_chunk,
    usage_of,
)
from .scheduler import QueueFullError, Scheduler, Ticket, make_scheduler
from .schemas import ChatRequest, CompletionRequest, error_location

ROUTES = ("/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions")


class _EventStream(StreamingResponse):
    """Server-sent events whose clean-up always runs, and runs at once.

    Starlette cancels a stream whose client disconnected but leaves its generator to the
    garbage collector; here the generator is closed and `cleanup` awaited (shielded from that
    cancellation) as soon as the response ends, however it ends.
    """

    def __init__(self, content: AsyncIterator[str], cleanup: Callable[[], Awaitable[None]]):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._content = content
        self._cleanup = cleanup

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._content.aclose()  # type: ignore[attr-defined]
                await self._cleanup()


class _Server:
    """Per-app state and the request handlers' shared steps."""

    def __init__(self, gen: Generator, config: ServeConfig):
        self.gen = gen
        self.config = config
        self.metrics = ServeMetrics(config.served_model_name)
        self.scheduler: Scheduler | None = None
        self.text = token_text(gen.tokenizer)
        self.created = now_seconds()

    async def get_scheduler(self) -> Scheduler:
        if self.scheduler is None:  # the lifespan normally starts it
            self.scheduler = make_scheduler(self.gen, self.config, self.metrics)
            await self.scheduler.start()
        return self.scheduler

    # -- parsing -------------------------------------------------------------------------
    @staticmethod
    async def read_json(request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"the request body is not valid JSON: {exc}",
                              code="invalid_json") from None
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        return body

    @staticmethod
    def validate(schema: type[BaseModel], body: dict[str, Any]) -> Any:
        try:
            return schema.model_validate(body)
        except ValidationError as exc:
            errors = exc.errors()
            extra = [e for e in errors if e["type"] == "extra_forbidden"]
            if extra:
                name = error_location(extra[0]["loc"])
                known = ", ".join(sorted(schema.model_fields))
                raise bad_request(f"unknown field {name!r}; this server accepts: {known}",
                                  name, "unknown_field") from None
            first = max(errors, key=lambda e: len(e["loc"]))
            where = error_location(first["loc"])
            if first["loc"][:1] == ("prompt",) and len(first["loc"]) > 1:
                raise bad_request("prompt must be a string, a list of strings, a list of token "
                                  f"ids or a list of token-id lists (at {where})",
                                  "prompt") from None
            raise bad_request(f"{where}: {first['msg']}", where) from None

    def check_model(self, model: str) -> None:
        name = self.config.served_model_name
        if model != name:
            raise APIError(404, f"model {model!r} is not served here; this server serves "
                                f"{name!r}", param="model", code="model_not_found")

    def prepare(self, mapped: Mapped, prompt_param: str, *, prompt: Any = None,
                messages: list[dict[str, Any]] | None = None) -> Prepared:
        """Validate and tokenize now; without a sent max_tokens, fit the cap to the context."""
        params = mapped.params
        try:
            try:
                return self.gen.prepare(prompt, params, messages=messages)
            except ContextLengthError as exc:
                if mapped.max_tokens_sent or exc.prompt_tokens >= exc.context_length:
                    raise
                params = params.replace(max_tokens=exc.context_length - exc.prompt_tokens)
                return self.gen.prepare(prompt, params, messages=messages)
        except (UnillmError, ValueError) as exc:
            raise from_unillm(exc, mapped.names, prompt_param) from None

    async def submit(self, prepared: list[Prepared], stream: bool) -> list[Ticket]:
        scheduler = await self.get_scheduler()
        tickets: list[Ticket] = []
        try:
            for p in prepared:
                tickets.append(scheduler.submit(p, stream=stream))
        except QueueFullError as exc:
            for t in tickets:
                t.close()
            raise APIError(429, str(exc), type="rate_limit_error", code="queue_full",
                           headers={"Retry-After": str(exc.retry_after)}) from None
        return tickets

    # -- running -------------------------------------------------------------------------
    async def gather(self, request: Request, tickets: list[Ticket], arrival: float,
                     prompt_param: str) -> list[Completion] | None:
        """Every ticket's Completion, or None if the client left first (generation cancelled)."""

        async def one(ticket: Ticket) -> Completion:
            clock = RequestClock(self.metrics, arrival)
            result = None
            events = ticket.events()
            try:
                async for item in events:
                    if isinstance(item, Chunk):
                        clock.tokens(len(item.token_ids), time.monotonic())
                    else:
                        result = item
            finally:
                await events.aclose()  # type: ignore[attr-defined]
            clock.done(time.monotonic())
            assert result is not None
            return result

        work = asyncio.ensure_future(asyncio.gather(*(one(t) for t in tickets)))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                work.cancel()
                with contextlib.suppress(BaseException):
                    await work
                return None
            try:
                return work.result()
            except Exception as exc:  # noqa: BLE001 - the engine failed: a 500 naming it
                raise from_unillm(exc, {}, prompt_param) from None
        finally:
            gone.cancel()
            for t in tickets:
                t.close()

    def stream(self, tickets: list[Ticket], arrival: float,
               render: Callable[[int, Chunk], dict[str, Any] | None],
               opening: list[dict[str, Any]], usage: Callable[[list[Completion]], dict] | None,
               prompt_param: str) -> _EventStream:
        """SSE: `opening` events, each chunk as `render` makes it, the `usage` event if asked
        for, then ``[DONE]``; an engine failure mid-stream becomes an error event."""
        open_events: list[Any] = []

        async def body() -> AsyncIterator[str]:
            for payload in opening:
                yield sse(payload)
            done: list[Completion] = []
            out: list[str] = []  # events not sent yet: several go in one write when we lag
            try:
                for p, ticket in enumerate(tickets):
                    clock = RequestClock(self.metrics, arrival)
                    events = ticket.events()
                    open_events.append(events)
                    async for item in events:
                        if isinstance(item, Chunk):
                            clock.tokens(len(item.token_ids), time.monotonic())
                            payload = render(p, item)
                            if payload is not None:
                                out.append(sse(payload))
                        else:
                            done.append(item)
                        if out and not ticket.has_ready():
                            yield "".join(out)
                            out.clear()
                    clock.done(time.monotonic())
                if out:
                    yield "".join(out)
                    out.clear()
                if usage is not None:
                    yield sse(usage(done))
            except Exception as exc:  # noqa: BLE001 - reported in the stream, as vLLM does
                yield sse(from_unillm(exc, {}, prompt_param).body())
            yield SSE_DONE

        async def cleanup() -> None:
            for events in open_events:
                with contextlib.suppress(Exception):
                    await events.aclose()
            for t in tickets:
                t.close()

        return _EventStream(body(), cleanup)


async def _disconnected(request: Request) -> None:
    """Returns when the client closes its connection (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _completion_prompts(prompt: Any, limit: int, vocab_size: int | None) -> list[Any]:
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise bad_request("prompt is an empty list", "prompt")
    if isinstance(prompt[0], int):
        prompt = [prompt]
    if len(prompt) > limit:
        raise bad_request(f"prompt holds {len(prompt)} prompts; this server takes at most "
                          f"{limit} per request", "prompt")
    if isinstance(prompt[0], str):
        return list(prompt)
    for ids in prompt:
        # An id outside the vocabulary would fail the engine's whole batch, not only this
        # request: refuse it here.
        bad = [i for i in ids if i < 0 or (vocab_size is not None and i >= vocab_size)]
        if bad:
            raise bad_request(f"prompt token id {bad[0]} is outside the vocabulary "
                              f"(0 <= id < {vocab_size})", "prompt")
    return [{"prompt_token_ids": ids} for ids in prompt]


def create_app(gen: Generator, config: ServeConfig, *, owns_generator: bool = False) -> FastAPI:
    """An ASGI app serving `gen` under OpenAI's API. With `owns_generator`, the app closes the
    generator when it shuts down (after in-flight requests have finished)."""
    server = _Server(gen, config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await server.get_scheduler()
        try:
            yield
        finally:
            if server.scheduler is not None:
                await server.scheduler.stop()
            if owns_generator:
                gen.close()

    app = FastAPI(title="unillm", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.server = server

    @app.exception_handler(APIError)
    async def api_error(_request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(server.metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{
            "id": config.served_model_name, "object": "model", "created": server.created,
            "owned_by": "unillm", "root": gen.model, "engine": gen.engine_name,
            "max_model_len": gen.engine.context_length,
        }]}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        arrival = time.monotonic()
        req: CompletionRequest = server.validate(CompletionRequest, await server.read_json(request))
        server.check_model(req.model)
        mapped = completion_params(req, config)
        prompts = _completion_prompts(req.prompt, config.max_prompts_per_request,
                                      getattr(gen.tokenizer, "vocab_size", None))
        prepared = [server.prepare(mapped, "prompt", prompt=p) for p in prompts]
        tickets = await server.submit(prepared, req.stream)
        rid, created, model = new_id("cmpl"), now_seconds(), config.served_model_name
        n = mapped.params.n
        want_lp = mapped.params.logprobs is not None
        if not req.stream:
            results = await server.gather(request, tickets, arrival, "prompt")
            if results is None:
                return Response(status_code=499)
            return JSONResponse(completion_response(rid, created, model, results, n, want_lp,
                                                    server.text))
        opts = req.stream_options
        include_usage = bool(opts and opts.include_usage)
        offsets: dict[int, int] = {}

        def render(p: int, chunk: Chunk) -> dict[str, Any] | None:
            lps = chunk.logprobs if want_lp else None
            if not chunk.text and chunk.finish_reason is None and not lps:
                return None
            index = p * n + chunk.index
            lp = None
            if lps:
                lp = completion_logprobs(lps, server.text, offsets.get(index, 0))
            offsets[index] = offsets.get(index, 0) + len(chunk.text)
            return completion_chunk(rid, created, model, index, chunk.text, chunk.finish_reason,
                                    lp, include_usage)

        def usage(done: list[Completion]) -> dict[str, Any]:
            return usage_chunk(rid, created, model, "text_completion", usage_of(done))

        return server.stream(tickets, arrival, render, [], usage if include_usage else None,
                             "prompt")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        arrival = time.monotonic()
        req: ChatRequest = server.validate(ChatRequest, await server.read_json(request))
        server.check_model(req.model)
        mapped = chat_params(req, config)
        messages = [m.as_template_message() for m in req.messages]
        prepared = server.prepare(mapped, "messages", messages=messages)
        tickets = await server.submit([prepared], req.stream)
        rid, created, model = new_id("chatcmpl"), now_seconds(), config.served_model_name
        want_lp = mapped.params.logprobs is not None
        if not req.stream:
            results = await server.gather(request, tickets, arrival, "messages")
            if results is None:
                return Response(status_code=499)
            return JSONResponse(chat_response(rid, created, model, results[0], want_lp,
                                              server.text))
        opts = req.stream_options
        include_usage = bool(opts and opts.include_usage)
        opening = [chat_chunk(rid, created, model, i, {"role": "assistant", "content": ""}, None,
                              None, include_usage) for i in range(mapped.params.n)]

        def render(_p: int, chunk: Chunk) -> dict[str, Any] | None:
            lps = chunk.logprobs if want_lp else None
            if not chunk.text and chunk.finish_reason is None and not lps:
                return None
            delta = {"content": chunk.text} if chunk.text else {}
            lp = chat_logprobs(lps, server.text) if lps else None
            return chat_chunk(rid, created, model, chunk.index, delta, chunk.finish_reason, lp,
                              include_usage)

        def usage(done: list[Completion]) -> dict[str, Any]:
            return usage_chunk(rid, created, model, "chat.completion.chunk", usage_of(done))

        return server.stream(tickets, arrival, render, opening,
                             usage if include_usage else None, "messages")

    # Outermost last: count every status, then authenticate, then read the body.
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    if config.api_key:
        app.add_middleware(BearerAuth, api_key=config.api_key)
    app.add_middleware(StatusCounter, metrics=server.metrics, routes=ROUTES)
    return app
