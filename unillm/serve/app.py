"""The FastAPI app: OpenAI's routes over one `Generator`.

A request goes: JSON -> schema (400 naming the field) -> `SamplingParams` (mapping.py) ->
`Generator.prepare` (context length, unsupported parameters: 400 before any queueing) ->
scheduler (429 when its queue is full) -> chunks, sent as server-sent events or gathered into
one response (server.py). However a request ends (done, client gone, error), its tickets are
closed, which cancels unfinished generations in the engine and frees their slots. Every error,
unknown routes and methods included, is OpenAI's ``{"error": {...}}`` shape.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..generator import Generator
from ..results import Chunk, Completion
from .chat_template import ChatRenderer
from .config import ServeConfig
from .errors import APIError, bad_request, method_not_allowed, not_found
from . import echo
from .info_routes import add_info_routes
from .mapping import Mapped, chat_params, completion_params
from .metrics import CONTENT_TYPE
from .middleware import BearerAuth, BodyLimit, StatusCounter
from .openapi import build_openapi
from .responses import (
    ChunkEvents,
    chat_chunk,
    chat_logprobs,
    chat_response,
    completion_chunk,
    completion_logprobs,
    completion_response,
    new_id,
    now_seconds,
    sse,
    usage_chunk,
    usage_of,
)
from .schemas import ChatRequest, CompletionRequest
from .server import Server
from .tool_stream import tool_chunk_events
from .tools import request_tools

ROUTES = ("/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions",
          "/tokenize", "/detokenize", "/version", "/openapi.json")
log = logging.getLogger("unillm.serve")


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




def _completion_prompt(server: Server, text_or_ids: Any, mapped: Mapped) -> Any:
    """A text prompt, tokenized here when vLLM's add_special_tokens=false asks for no bos."""
    if mapped.add_special_tokens is not False or not isinstance(text_or_ids, str):
        return text_or_ids
    hf = server.chat.hf
    if hf is None or not server.gen.capabilities.token_ids:
        raise bad_request("add_special_tokens=false needs an engine that takes token ids",
                          "add_special_tokens", "unsupported_parameter")
    return {"prompt_token_ids": list(hf.encode(text_or_ids, add_special_tokens=False))}


def _chat_prepare(server: Server, req: ChatRequest, mapped: Mapped) -> Any:
    """The conversation, rendered here (token-id engines: templates, vLLM's extras) or handed
    to the engine's own chat (HTTP engines, which refuse the extras)."""
    messages = [m.as_template_message() for m in req.messages]
    gen, chat = server.gen, server.chat
    tools = request_tools(req, gen.tool_parser, server.config.chat_template)
    extras = {"chat_template_kwargs": bool(req.chat_template_kwargs),
              "add_generation_prompt": req.add_generation_prompt is False,
              "continue_final_message": bool(req.continue_final_message),
              "add_special_tokens": bool(req.add_special_tokens)}
    if gen.capabilities.token_ids and chat.can_render:
        ids = chat.token_ids(
            messages, add_generation_prompt=req.add_generation_prompt is not False,
            continue_final_message=bool(req.continue_final_message),
            add_special_tokens=bool(req.add_special_tokens),
            kwargs=dict(req.chat_template_kwargs or {}),
            tools=tools.definitions if tools is not None else None)
        return server.prepare(mapped, "messages", prompt={"prompt_token_ids": ids}, tools=tools)
    sent = [name for name, on in extras.items() if on]
    if sent:
        raise bad_request(f"{sent[0]} is not supported by engine {gen.engine_name!r} (it "
                          "applies the chat template itself)", sent[0], "unsupported_parameter")
    return server.prepare(mapped, "messages", messages=messages, tools=tools)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            err = not_found(request.url.path)
        elif exc.status_code == 405:
            err = method_not_allowed(request.method, request.url.path)
            err.headers = dict(exc.headers or {})
        else:
            err = APIError(exc.status_code, str(exc.detail),
                           type="invalid_request_error" if exc.status_code < 500
                           else "server_error")
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first["loc"][1:]) or None
        return JSONResponse(bad_request(f"{param}: {first['msg']}", param).body(), 400)

    @app.exception_handler(Exception)
    async def server_fault(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unillm serve: unexpected error")
        err = APIError(500, f"internal server error: {type(exc).__name__}: {exc}",
                       type="server_error")
        return JSONResponse(err.body(), status_code=500)


def create_app(gen: Generator, config: ServeConfig, *, owns_generator: bool = False) -> FastAPI:
    """An ASGI app serving `gen` under OpenAI's API. With `owns_generator`, the app closes the
    generator when it shuts down (after in-flight requests have finished)."""
    if config.chat_template is not None and gen.capabilities.chat:
        raise ValueError(f"--chat-template cannot apply to engine {gen.engine_name!r}: it "
                         "formats chat messages itself")
    if config.chat_template is not None and not ChatRenderer(gen.tokenizer, None).can_render:
        # Never ignored: without a Hugging Face tokenizer (a bare .gguf file on llamacpp)
        # the engine renders its own file's template, and the option would change nothing.
        raise ValueError(f"--chat-template needs a Hugging Face tokenizer, which engine "
                         f"{gen.engine_name!r} does not have here: load the model's Hugging Face "
                         "directory instead of a bare file, or put the template in the file")
    server = Server(gen, config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await server.get_scheduler()
        # What exists now (the model, the imported libraries: several hundred thousand
        # objects) lives as long as the server: keep it out of the garbage collector's full
        # passes, each of which would otherwise scan all of it and stall every request
        # (measured: 100 to 430 ms per pass on the test models, several passes per minute
        # under load). Objects freed by reference counting are still freed.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            if server.scheduler is not None:
                await server.scheduler.stop()
            if owns_generator:
                gen.close()

    from .. import __version__

    app = FastAPI(title="unillm", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.server = server
    _add_error_handlers(app)
    schema: dict[str, Any] = {}

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        if not schema:
            schema.update(build_openapi(app, config.served_model_name))
        return JSONResponse(schema)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(server.metrics.exposition(), media_type=CONTENT_TYPE)

    add_info_routes(app, server, __version__)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        arrival = time.monotonic()
        req: CompletionRequest = server.validate(CompletionRequest, await server.read_json(request))
        server.check_model(req.model)
        mapped = completion_params(req, config)
        prompts = _completion_prompts(req.prompt, config.max_prompts_per_request,
                                      getattr(gen.tokenizer, "vocab_size", None))
        prepared = [server.prepare(mapped, "prompt", prompt=_completion_prompt(server, p, mapped))
                    for p in prompts]
        tickets = await server.submit(prepared, bool(req.stream))
        rid, created, model = new_id("cmpl"), now_seconds(), config.served_model_name
        n = mapped.params.n
        want_lp = mapped.params.logprobs is not None
        if not req.stream:
            results = await server.gather(request, tickets, arrival, "prompt")
            if results is None:
                return Response(status_code=499)
            body = completion_response(rid, created, model, results, n, want_lp, server.text)
            if mapped.include_stop_str:
                _append_stop_strings(body["choices"], results, n, "text")
            if mapped.echo or mapped.prompt_logprobs:
                echo.apply(body, results, mapped, server.text,
                           getattr(gen.tokenizer, "decode", None))
            return JSONResponse(body)
        opts = req.stream_options
        include_usage = bool(opts and opts.include_usage)
        continuous = bool(opts and opts.continuous_usage_stats)
        offsets: dict[int, int] = {}

        events = ChunkEvents(rid, created, model, "text_completion", include_usage)

        def render(p: int, chunk: Chunk, so_far: dict[str, int] | None) -> str | None:
            lps = chunk.logprobs if want_lp else None
            if not chunk.text and chunk.finish_reason is None and not lps:
                return None
            index = p * n + chunk.index
            if not want_lp and so_far is None:
                return events.completion(index, chunk.text, chunk.finish_reason)
            lp = None
            if lps:
                lp = completion_logprobs(lps, server.text, offsets.get(index, 0))
            offsets[index] = offsets.get(index, 0) + len(chunk.text)
            payload = completion_chunk(rid, created, model, index, chunk.text,
                                       chunk.finish_reason, lp, include_usage)
            if so_far is not None:
                payload["usage"] = so_far
            return sse(payload)

        def usage(done: list[Completion]) -> dict[str, Any]:
            return usage_chunk(rid, created, model, "text_completion", usage_of(done))

        return server.stream(tickets, arrival, render, [], usage if include_usage else None,
                             "prompt", include_stop_str=mapped.include_stop_str,
                             continuous_usage=continuous)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        arrival = time.monotonic()
        req: ChatRequest = server.validate(ChatRequest, await server.read_json(request))
        server.check_model(req.model)
        mapped = chat_params(req, config)
        prepared = _chat_prepare(server, req, mapped)
        tickets = await server.submit([prepared], bool(req.stream))
        rid, created, model = new_id("chatcmpl"), now_seconds(), config.served_model_name
        want_lp = mapped.params.logprobs is not None
        if not req.stream:
            results = await server.gather(request, tickets, arrival, "messages")
            if results is None:
                return Response(status_code=499)
            body = chat_response(rid, created, model, results[0], want_lp, server.text)
            if mapped.include_stop_str:
                _append_stop_strings(body["choices"], results, mapped.params.n, "message")
            return JSONResponse(body)
        opts = req.stream_options
        include_usage = bool(opts and opts.include_usage)
        continuous = bool(opts and opts.continuous_usage_stats)
        opening = [chat_chunk(rid, created, model, i, {"role": "assistant", "content": ""}, None,
                              None, include_usage) for i in range(mapped.params.n)]

        events = ChunkEvents(rid, created, model, "chat.completion.chunk", include_usage)

        def render(_p: int, chunk: Chunk, so_far: dict[str, int] | None) -> str | None:
            lps = chunk.logprobs if want_lp else None
            if chunk.tool_calls is not None:  # a request with tools: serve/tool_stream.py
                return tool_chunk_events(rid, created, model, chunk, chat_logprobs(
                    lps, server.text) if lps else None, include_usage, so_far)
            if not chunk.text and chunk.finish_reason is None and not lps:
                return None
            if not lps and so_far is None:
                return events.chat(chunk.index, chunk.text, chunk.finish_reason)
            delta = {"content": chunk.text} if chunk.text else {}
            payload = chat_chunk(rid, created, model, chunk.index, delta, chunk.finish_reason,
                                 chat_logprobs(lps, server.text) if lps else None, include_usage)
            if so_far is not None:
                payload["usage"] = so_far
            return sse(payload)

        def usage(done: list[Completion]) -> dict[str, Any]:
            return usage_chunk(rid, created, model, "chat.completion.chunk", usage_of(done))

        return server.stream(tickets, arrival, render, opening,
                             usage if include_usage else None, "messages",
                             include_stop_str=mapped.include_stop_str,
                             continuous_usage=continuous)

    # Outermost last: count every status, then authenticate, then read the body.
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    if config.api_key:
        app.add_middleware(BearerAuth, api_key=config.api_key)
    app.add_middleware(StatusCounter, metrics=server.metrics, routes=ROUTES)
    return app


def _append_stop_strings(choices: list[dict[str, Any]], results: list[Completion], n: int,
                         field: str) -> None:
    """vLLM's include_stop_str_in_output for whole responses: each choice's text gets the
    stop string that ended it back."""
    for p, completion in enumerate(results):
        for s in completion.samples:
            if not isinstance(s.stop_reason, str):
                continue
            choice = choices[p * n + s.index] if field == "text" else choices[s.index]
            if field == "text":
                choice["text"] += s.stop_reason
            elif choice["message"]["content"] is not None:
                choice["message"]["content"] += s.stop_reason
