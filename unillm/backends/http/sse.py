"""Server-Sent Events as LLM servers stream them: the parser, the decoding of one stream, and
the loops that drive it over a line iterator, sync and async.

The non-I/O logic (splitting events, the ``[DONE]`` sentinel, JSON and in-stream errors) lives
once, in `SSEParser` and `SSEDecoder`; only the loop that pulls lines is written twice
(`iter_events` / `aiter_events`), as httpx does with its decoders. The HTTP client and the serve
bench's client both read streams through these.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from ...errors import EngineError

__all__ = ["DONE", "SSEDecoder", "SSEParser", "aiter_events", "aparse_events", "decode_event",
           "iter_events", "json_decoder", "parse_events", "stream_error"]

T = TypeVar("T")

DONE = "[DONE]"
"""The sentinel OpenAI-compatible servers send as the last event's data."""


class SSEParser:
    """Server-Sent Events, as the HTML standard defines them, reduced to what LLM servers use:
    ``data:`` lines (joined by newlines), blank lines ending an event, comments (``:``, the
    keep-alive pings) and the other fields ignored."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        """One line (without its line break); returns an event's data when one is complete."""
        if line == "":
            return self.flush()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        return None

    def flush(self) -> str | None:
        """The event still being read, at the end of the stream (a server may omit the final
        blank line), or None."""
        if not self._data:
            return None
        data = "\n".join(self._data)
        self._data = []
        return data


class SSEDecoder(Generic[T]):
    """One stream's decoding without its I/O: lines in, each event's `decode`d data out, up to
    the `sentinel` (None: read to the end). `done` turns True at the sentinel, after which the
    loop stops reading (a server may keep the connection open after it).

    Lines may keep their line break (a file's lines) or not (httpx's ``iter_lines``).
    """

    def __init__(self, decode: Callable[[str], T], sentinel: str | None = DONE):
        self.decode = decode
        self.sentinel = sentinel
        self.done = False
        self._parser = SSEParser()

    def feed(self, line: str) -> list[T]:
        """The event `line` completes, if any (a list, so the loops need no None check)."""
        return self._take(self._parser.feed(line.rstrip("\r\n")))

    def flush(self) -> list[T]:
        """The last event, at the end of the stream."""
        return self._take(self._parser.flush())

    def _take(self, data: str | None) -> list[T]:
        if data is None or self.done:
            return []
        if self.sentinel is not None and data.strip() == self.sentinel:
            self.done = True
            return []
        return [self.decode(data)]


def iter_events(decoder: SSEDecoder[T], lines: Iterable[str]) -> Iterator[T]:
    """`decoder` driven over `lines` until its sentinel or the lines' end."""
    for line in lines:
        yield from decoder.feed(line)
        if decoder.done:
            return
    yield from decoder.flush()


async def aiter_events(decoder: SSEDecoder[T], lines: AsyncIterable[str]) -> AsyncIterator[T]:
    """`iter_events` over lines that arrive asynchronously (httpx's ``aiter_lines()``)."""
    async for line in lines:
        for event in decoder.feed(line):
            yield event
        if decoder.done:
            return
    for event in decoder.flush():
        yield event


def parse_events(lines: Iterable[str]) -> Iterator[str]:
    """The data of each complete event in `lines`, ``[DONE]`` included (the caller stops)."""
    return iter_events(SSEDecoder(str, sentinel=None), lines)


def aparse_events(lines: AsyncIterable[str]) -> AsyncIterator[str]:
    """`parse_events` over lines that arrive asynchronously."""
    return aiter_events(SSEDecoder(str, sentinel=None), lines)


def stream_error(event: Mapping[str, Any]) -> str | None:
    """An error reported inside a stream (``{"error": ...}``), or None."""
    err = event.get("error")
    if err is None:
        return None
    if isinstance(err, dict):
        return str(err.get("message", err))
    return str(err)


def decode_event(engine: str, data: str) -> dict[str, Any]:
    """An event's data as the JSON object LLM servers send; an `EngineError` (naming `engine`)
    when it is not one, or when the server reports an error in it: a stream that fails midway
    must not end as if it had finished."""
    try:
        event = json.loads(data)
    except ValueError as exc:
        raise EngineError(engine, f"the server sent a stream event that is not JSON: "
                                  f"{data[:200]!r}") from exc
    if not isinstance(event, dict):
        raise EngineError(engine, f"the server sent an unexpected stream event: {data[:200]!r}")
    message = stream_error(event)
    if message is not None:
        raise EngineError(engine, f"the server reported an error mid-stream: {message}")
    return event


def json_decoder(engine: str) -> SSEDecoder[dict[str, Any]]:
    """The decoder of an LLM server's stream: JSON objects up to ``[DONE]``."""
    return SSEDecoder(lambda data: decode_event(engine, data))
