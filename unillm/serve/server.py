"""The server's per-app state and the steps every generation route shares.

Parse (400 naming the field) -> prepare (context length, unsupported parameters: 400 before
any queueing) -> submit (429 when the queue is full) -> gather or stream. Kept apart from the
route table (app.py) so that each stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from ..errors import ContextLengthError, UnillmError
from ..generator import Generator, Prepared
from ..results import Chunk, Completion
from .chat_template import ChatRenderer
from .config import ServeConfig
from .errors import APIError, bad_request, from_unillm
from .mapping import Mapped
from .metrics import RequestClock, ServeMetrics
from .responses import SSE_DONE, now_seconds, sse, token_text
from .choice import make_scheduler
from .scheduler import QueueFullError, Scheduler, Ticket
from .schemas import accepted_fields, error_location
from .tools import NAMES as TOOL_NAMES

Render = Callable[[int, Chunk, "dict[str, int] | None"], "str | None"]


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


class Server:
    """Per-app state and the request handlers' shared steps."""

    def __init__(self, gen: Generator, config: ServeConfig):
        self.gen = gen
        self.config = config
        self.metrics = ServeMetrics(config.served_model_name)
        self.scheduler: Scheduler | None = None
        self.text = token_text(gen.tokenizer)
        self.created = now_seconds()
        self.chat = ChatRenderer(gen.tokenizer, config.chat_template)

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
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
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
                raise unknown_field(schema, extra[0]["loc"]) from None
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
                messages: list[dict[str, Any]] | None = None, tools: Any = None) -> Prepared:
        """Validate and tokenize now; without a sent max_tokens, fit the cap to the context.
        `tools`: the request's `ToolRequest` (serve/tools.py)."""
        params = mapped.params
        try:
            try:
                return self.gen.prepare(prompt, params, messages=messages, tools=tools)
            except ContextLengthError as exc:
                if mapped.max_tokens_sent or exc.prompt_tokens >= exc.context_length:
                    raise
                params = params.replace(max_tokens=exc.context_length - exc.prompt_tokens)
                return self.gen.prepare(prompt, params, messages=messages, tools=tools)
        except (UnillmError, ValueError) as exc:
            names = mapped.names if tools is None else {**TOOL_NAMES, **mapped.names}
            raise from_unillm(exc, names, prompt_param, preparing=True) from None

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

    def stream(self, tickets: list[Ticket], arrival: float, render: Render,
               opening: list[dict[str, Any]], usage: Callable[[list[Completion]], dict] | None,
               prompt_param: str, *, include_stop_str: bool = False,
               continuous_usage: bool = False) -> _EventStream:
        """SSE: `opening` events, each chunk as `render` makes its event, the `usage` event if
        asked for, then ``[DONE]``; an engine failure mid-stream becomes an error event. The
        events that are ready together go out in one write.

        With `include_stop_str` a sample's last chunk waits for its Completion, which names
        the stop string to append; with `continuous_usage` each event carries the usage so
        far (`render`'s third argument), as vLLM's `continuous_usage_stats` does."""
        open_events: list[Any] = []

        async def body() -> AsyncIterator[str]:
            for payload in opening:
                yield sse(payload)
            done: list[Completion] = []
            try:
                for p, ticket in enumerate(tickets):
                    clock = RequestClock(self.metrics, arrival)
                    prompt_ids = getattr(ticket.prepared, "prompt_ids", None)
                    counts = {"prompt": len(prompt_ids or ()), "completion": 0}
                    held: list[Chunk] = []
                    batches = ticket.batches()
                    open_events.append(batches)
                    async for items in batches:
                        at = time.monotonic()
                        out = []
                        for item in items:
                            if isinstance(item, Chunk):
                                clock.tokens(len(item.token_ids), at)
                                counts["completion"] += len(item.token_ids)
                                if include_stop_str and item.finish_reason == "stop":
                                    held.append(item)
                                    continue
                                chunks = [item]
                            else:
                                done.append(item)
                                chunks = [with_stop_string(c, item) for c in held]
                                held = []
                            for chunk in chunks:
                                event = render(p, chunk, _usage(counts) if continuous_usage
                                               else None)
                                if event is not None:
                                    out.append(event)
                        if out:
                            yield "".join(out)
                    clock.done(time.monotonic())
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


def _usage(counts: dict[str, int]) -> dict[str, int]:
    return {"prompt_tokens": counts["prompt"], "completion_tokens": counts["completion"],
            "total_tokens": counts["prompt"] + counts["completion"]}


def with_stop_string(chunk: Chunk, completion: Completion) -> Chunk:
    """The chunk with the stop string that ended its sample appended (vLLM's
    include_stop_str_in_output); a stop token id adds nothing, as in vLLM."""
    for s in completion.samples:
        if s.index == chunk.index and isinstance(s.stop_reason, str):
            return replace(chunk, text=chunk.text + s.stop_reason)
    return chunk


def unknown_field(schema: type[BaseModel], loc: tuple[Any, ...]) -> APIError:
    """The 400 for a field the schema lacks: the closest accepted name, then the list of
    fields that can take effect (not those always refused)."""
    name = error_location(loc)
    accepted = accepted_fields(schema) if len(loc) == 1 else []
    close = difflib.get_close_matches(str(loc[-1]), accepted, n=1)  # top level only
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listing = f" This endpoint accepts: {', '.join(accepted)}" if accepted else ""
    return bad_request(f"unknown field {name!r}.{hint}{listing}", name, "unknown_field")


async def _disconnected(request: Request) -> None:
    """Returns when the client closes its connection (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return

