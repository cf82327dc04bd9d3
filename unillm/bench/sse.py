"""Server-sent events, as OpenAI-compatible servers stream them.

Only what a streaming completion needs: events are separated by a blank line; each ``data:``
line adds a line to the event's data; ``event:``, ``id:``, ``retry:`` and ``:`` comment lines
are ignored. The caller stops at the ``[DONE]`` sentinel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator

DONE = "[DONE]"


def _field(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name, value[1:] if value.startswith(" ") else value


def parse_events(lines: Iterable[str]) -> Iterator[str]:
    """The data of each complete event in `lines` (synchronous form, for tests and files)."""
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        name, value = _field(line)
        if name == "data":
            data.append(value)
    if data:
        yield "\n".join(data)


async def aparse_events(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The data of each event as lines arrive (httpx's ``response.aiter_lines()``)."""
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        name, value = _field(line)
        if name == "data":
            data.append(value)
    if data:
        yield "\n".join(data)
