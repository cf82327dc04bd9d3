"""The public base of HTTP engines (`unillm.backends.http`), as a third-party plugin uses it.

The SSE reading is tested on line iterators (sync and async must agree, and stop at
``[DONE]``); the engine skeleton through a toy engine for a toy "words" server, registered as a
plugin is: it implements only what `HTTPEngine`'s docstring asks, and gets batches, concurrency,
retries, async and stop strings from the base.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest

import unillm
from unillm import SamplingParams as SP
from unillm.backends.http import (
    DONE, HTTPClient, HTTPEngine, HTTPOptions, aiter_events, iter_events, json_decoder,
    parse_events,
)
from unillm.engine import Capabilities, EngineRequest, EngineResult, EngineSequence, TokenEvent
from unillm.errors import EngineError

from ..servers import serve_in_thread


# -- SSE --------------------------------------------------------------------------------------
def _read(lines, mode: str) -> list[dict]:
    """The JSON events of `lines` read as the client reads a stream, sync or async; lines
    are pulled one at a time in both."""
    if mode == "sync":
        return list(iter_events(json_decoder("test"), iter(lines)))

    async def lines_async() -> AsyncIterator[str]:
        for line in lines:
            yield line

    async def run() -> list[dict]:
        return [e async for e in aiter_events(json_decoder("test"), lines_async())]

    return asyncio.run(run())


MODES = ["sync", "async"]


@pytest.mark.parametrize("mode", MODES)
def test_sse_events_are_read_alike_sync_and_async(mode):
    lines = [": keep-alive", "data: {\"a\":", "data:  1}", "", "event: x", "id: 3",
             "data: {\"b\": 2}\r\n", "", "data: {\"c\": 3}"]  # the last has no blank line
    assert _read(lines, mode) == [{"a": 1}, {"b": 2}, {"c": 3}]


@pytest.mark.parametrize("mode", MODES)
def test_sse_reading_stops_at_done_without_pulling_more_lines(mode):
    pulled: list[str] = []

    def lines() -> Iterator[str]:  # a server that keeps the connection open after [DONE]
        for line in ["data: {\"a\": 1}", "", f"data: {DONE}", "", "data: {\"b\": 2}"]:
            pulled.append(line)
            if "b" in line:
                raise AssertionError("read past [DONE]: this would wait on the server")
            yield line

    assert _read(lines(), mode) == [{"a": 1}]
    assert pulled[-2:] == [f"data: {DONE}", ""]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("line,match", [
    ("data: {\"error\": {\"message\": \"out of memory\"}}", "mid-stream: out of memory"),
    ("data: not json", "not JSON"),
    ("data: [1, 2]", "unexpected stream event"),
])
def test_a_bad_or_failed_sse_event_is_an_engine_error(mode, line, match):
    with pytest.raises(EngineError, match=match):
        _read(["data: {\"a\": 1}", "", line, ""], mode)


def test_parse_events_gives_raw_data_and_leaves_done_to_the_caller():
    lines = ["data: x\n", "\n", "data: y\n", "data: z\n", "\n", f"data: {DONE}\n", "\n"]
    assert list(parse_events(lines)) == ["x", "y\nz", DONE]


# -- a plugin engine built on HTTPEngine ------------------------------------------------------
WORDS = " one two three four five six seven eight".split(" ")[1:]


def _words_app(state: dict):
    """A toy server: answers a prompt with the first `max_words` of WORDS, whole
    (POST /complete) or as SSE (POST /stream, one word an event, then a final event and
    [DONE]); `state["fail_next"]` lists statuses to answer the next requests with."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    def answer(body: dict) -> tuple[list[str], str]:
        n = body["max_words"]
        return [" " + w for w in WORDS[:n]], "length" if n < len(WORDS) else "stop"

    async def fail(request: Request):
        state["posts"] += 1
        if state["fail_next"]:
            status = state["fail_next"].pop(0)
            return JSONResponse({"error": f"toy server: {status}"}, status_code=status,
                                headers={"Retry-After": "0"})
        return None

    async def complete(request: Request):
        refused = await fail(request)
        if refused is not None:
            return refused
        words, finish = answer(await request.json())
        return JSONResponse({"text": "".join(words), "finish": finish, "words": len(words)})

    async def stream(request: Request):
        refused = await fail(request)
        if refused is not None:
            return refused
        words, finish = answer(await request.json())

        async def events():
            for word in words:
                yield f"data: {json.dumps({'text': word})}\n\n"
            yield f"data: {json.dumps({'finish': finish, 'words': len(words)})}\n\n"
            yield f"data: {DONE}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def health(request: Request):
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/health", health), Route("/complete", complete, methods=["POST"]),
                             Route("/stream", stream, methods=["POST"])])


class WordsEngine(HTTPEngine):
    """What a plugin writes: options, capabilities, the client, and one request each way."""

    Options = HTTPOptions
    capabilities = Capabilities(params=frozenset({"max_tokens", "temperature"}),
                                batch_params="per_request", token_ids=False, stop_hook=True,
                                concurrent=True)

    def __init__(self, model: str, options: HTTPOptions):
        super().__init__(model, options)
        self.client = HTTPClient("words", options)
        self._probe("health")

    @staticmethod
    def _body(request: EngineRequest) -> dict:
        return {"prompt": request.prompt, "max_words": request.params.max_tokens}

    def _result(self, data: dict, request: EngineRequest, body: dict) -> EngineResult:
        seq = EngineSequence([], data["finish"], text=data["text"], output_tokens=data["words"])
        return EngineResult([seq], received=body, prompt_tokens=len(request.prompt.split()))

    def _complete(self, request: EngineRequest) -> EngineResult:
        body = self._body(request)
        return self._result(self.client.post_json("complete", body), request, body)

    async def _acomplete(self, request: EngineRequest) -> EngineResult:
        body = self._body(request)
        return self._result(await self.client.apost_json("complete", body), request, body)

    def _event(self, event: dict) -> TokenEvent:
        if "finish" in event:
            return TokenEvent(finish_reason=event["finish"], output_tokens=event["words"])
        return TokenEvent(text=event["text"])

    def stream(self, request: EngineRequest) -> Iterator[TokenEvent]:
        body = self._body(request)
        yield TokenEvent(result=EngineResult(received=body))
        for event in self.client.stream_events("stream", body):
            yield self._event(event)

    async def astream(self, request: EngineRequest) -> AsyncIterator[TokenEvent]:  # type: ignore[override]
        body = self._body(request)
        yield TokenEvent(result=EngineResult(received=body))
        async for event in self.client.astream_events("stream", body):
            yield self._event(event)


class _WordsPlugin:
    @unillm.hookimpl
    def unillm_register_engines(self, register):
        register("test-words-http", WordsEngine, requires=("httpx",))


@pytest.fixture(scope="module")
def words():
    pytest.importorskip("starlette")
    if "test-words-http" not in {i.name for i in unillm.engines()}:
        unillm.register_plugin(_WordsPlugin(), name="test-words-http")
    state = {"fail_next": [], "posts": 0}
    with serve_in_thread(_words_app(state), "/health") as base:
        with unillm.load("test-words-http", "words", base_url=base, backoff=0.0,
                         max_concurrency=3) as gen:
            yield gen, state


def test_a_plugin_on_httpengine_generates_and_streams_the_same(words):
    gen, _ = words
    out = gen.generate("a b", SP(max_tokens=3, temperature=0.0))
    assert out.text == " one two three" and out.finish_reason == "length"
    assert out.timing.output_tokens == 3 and out.timing.prompt_tokens == 2
    assert out.engine_params == {"prompt": "a b", "max_words": 3}
    stream = gen.stream("a b", SP(max_tokens=3, temperature=0.0))
    assert [c.text for c in stream if c.text] == [" one", " two", " three"]
    assert stream.completion.text == out.text
    assert stream.completion.engine_params == out.engine_params  # the stream's `result`


def test_a_plugin_on_httpengine_gets_batches_async_and_retries(words):
    gen, state = words
    params = SP(max_tokens=4, temperature=0.0)
    prompts = ["a", "b c", "d"]
    state["fail_next"] = [503]  # refused once, before any output: retried
    posts = state["posts"]
    batch = gen.generate(prompts, params)
    assert [c.text for c in batch] == [" one two three four"] * 3
    assert state["posts"] == posts + 4

    async def run():
        return (await gen.agenerate(prompts, params),
                "".join([c.text async for c in gen.astream("x", params)]))

    abatch, text = asyncio.run(run())
    assert [c.text for c in abatch] == [c.text for c in batch]
    assert text == batch[0].text


def test_a_plugin_on_httpengine_has_stop_strings_matched_by_unillm(words):
    gen, _ = words
    out = gen.generate("a", SP(max_tokens=8, temperature=0.0, stop=[" four"]))
    assert out.text == " one two three"
    assert out.finish_reason == "stop" and out.stop_reason == " four"
    assert out.timing.output_tokens == 4  # the stream was closed at the match, not read on
    assert "stop" in out.emulated


def test_a_plugin_on_httpengine_loses_only_the_failed_prompt(words):
    gen, state = words
    state["fail_next"] = [400]  # not retried: only that request fails
    with pytest.raises(unillm.BatchError) as info:
        gen.generate(["a", "b"], SP(max_tokens=2, temperature=0.0))
    errors, completions = info.value.errors, info.value.completions
    assert len(errors) == 1 and "HTTP 400" in str(next(iter(errors.values())))
    assert sorted(c.text if c else "" for c in completions) == ["", " one two"]
