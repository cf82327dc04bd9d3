"""Server-sent events, as OpenAI-compatible servers stream them, for the serve bench's client.

The parsing itself is the HTTP engines' (`unillm.backends._http.SSEParser`); these wrap it for
line iterators, sync and async. The caller stops at the ``[DONE]`` sentinel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator

from ..backends._http import SSEParser

DONE = "[DONE]"


def parse_events(lines: Iterable[str]) -> Iterator[str]:
    """The data of each complete event in `lines` (synchronous form, for tests and files)."""
    parser = SSEParser()
    for raw in lines:
        data = parser.feed(raw.rstrip("\r\n"))
        if data is not None:
            yield data
    data = parser.flush()
    if data is not None:
        yield data


async def aparse_events(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The data of each event as lines arrive (httpx's ``response.aiter_lines()``)."""
    parser = SSEParser()
    async for raw in lines:
        data = parser.feed(raw.rstrip("\r\n"))
        if data is not None:
            yield data
    data = parser.flush()
    if data is not None:
        yield data
