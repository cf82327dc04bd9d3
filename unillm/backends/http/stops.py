"""Batch results read from a stream that unillm ends at its own stop strings.

A server that cannot say which stop string ended a completion leaves the matching to unillm
(`Capabilities.stop_hook`): the request is streamed and the stream closed at the first match,
which both ends generation early and lets the result name the stop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

from ...engine import EngineRequest, EngineResult, EngineSequence, TokenEvent
from ...timing import now

__all__ = ["StopCollector", "acollect", "collect"]


class StopCollector:
    """A batch result built from a text stream that unillm ends at its own stop strings.

    HTTP engines whose server cannot say which stop string matched let unillm match them
    (`Capabilities.stop_hook`): a batch request is then streamed, each text delta goes to
    `request.should_stop`, and the stream is closed at the first match. The text kept is
    everything received; unillm's `finalize` cuts it at the stop and names it.
    """

    def __init__(self, request: EngineRequest):
        self.request = request
        self.parts: list[str] = []
        self.times: list[float] = []
        self.final: TokenEvent | None = None
        self.reported = EngineResult()

    def take(self, event: TokenEvent) -> bool:
        """Record one TokenEvent; True when the stream can be closed."""
        if event.result is not None:
            self.reported = event.result
        self.times.extend([now()] * event.token_count)
        if event.text:
            self.parts.append(event.text)
            if self.request.should_stop(0, text=event.text):
                return True
        if event.finish_reason is not None:
            self.final = event
            return True
        return False

    def result(self) -> EngineResult:
        text = "".join(self.parts)
        final = self.final
        if final is None:  # unillm's stop fired: the tokens received so far
            seq = EngineSequence([], "length", text=text, token_times=self.times,
                                 output_tokens=len(self.times))
        else:
            seq = EngineSequence([], final.finish_reason or "length", final.stop_reason,
                                 text=text, token_times=self.times,
                                 output_tokens=final.output_tokens)
        return replace(self.reported, samples=[seq])


def collect(request: EngineRequest, events: Iterator[TokenEvent]) -> EngineResult:
    """`request`'s batch result from its stream `events`, which is closed (ending the request
    on the server) at the first stop unillm matches or at the finishing event."""
    collector = StopCollector(request)
    try:
        for event in events:
            if collector.take(event):
                break
    finally:
        events.close()  # type: ignore[attr-defined]
    return collector.result()


async def acollect(request: EngineRequest, events: AsyncIterator[TokenEvent]) -> EngineResult:
    """The asyncio counterpart of `collect`."""
    collector = StopCollector(request)
    try:
        async for event in events:
            if collector.take(event):
                break
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    return collector.result()
