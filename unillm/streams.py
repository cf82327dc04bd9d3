"""Streaming calls: engine events in, `Chunk`s and finally the `Completion` out.

`StreamAssembler` turns one prompt's events into chunks, and at the end builds its samples
through `assembly.build_sample`, the same function a batch call uses. `Stream`/`AsyncStream`
wrap one prompt; `MultiStream` runs several as native batches (`Engine.stream_batch`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING

from .assembly import SampleRecord, build_completion, build_sample, copy_sample, logprobs_of
from .decoding import SampleTracker
from .engine import EngineRequest, EngineResult, TokenEvent
from .planning import batch_groups
from .prepared import Prepared
from .results import Chunk, Completion, Sample, ToolCallDelta
from .scoring import afill_prompt_logprobs, fill_prompt_logprobs
from .timing import now

if TYPE_CHECKING:
    from .calls import EngineCalls
    from .tools.plan import ToolStream


class StreamAssembler:
    """One prompt's stream: events in (per engine request `offset`), chunks out, then the
    `Completion`. Sample index = request offset (emulated n) + the event's own index (native
    n)."""

    def __init__(self, calls: EngineCalls, prepared: Prepared):
        self.calls = calls
        self.prepared = prepared
        self.decode = calls.decoder(prepared.params)
        self.start = now()
        self.trackers: dict[int, SampleTracker] = {}
        self.records: dict[int, SampleRecord] = {}
        self.samples: dict[int, Sample] = {}
        self.results: dict[int, EngineResult] = {}  # per request offset: the engine's report
        self.tool_streams: dict[int, ToolStream] = {}  # with tools: per sample
        self.n_per_request = prepared.requests[0].params.n if prepared.requests else 1

    def _open(self, i: int) -> SampleTracker:
        tracker = self.trackers.get(i)
        if tracker is None:
            tracker = self.trackers[i] = SampleTracker(self.decode, self.prepared.plan.rules)
            self.records[i] = SampleRecord()
        return tracker

    def on_event(self, event: TokenEvent, offset: int) -> Iterator[Chunk]:
        if event.result is not None:
            self.results[offset] = event.result
            if not (event.token_ids or event.text or event.finish_reason or event.tokens):
                return  # a report only
        i = offset * self.n_per_request + event.index
        if i in self.samples:
            return
        tracker = self._open(i)
        ids = tuple(event.token_ids)
        self.records[i].add(event, now())
        text = tracker.push(ids, event.text if self.decode is None else None)
        if text or ids or event.tool_calls:
            chunk = Chunk(text, ids, i, logprobs=logprobs_of(event))
            tools = self.prepared.tools
            yield self._tools(i).chunk(chunk, event.tool_calls) if tools and tools.active \
                else chunk
        if tracker.stopped or event.finish_reason is not None:
            yield self._finish(i, event.finish_reason or "length", event.stop_reason)

    def _tools(self, i: int) -> ToolStream:
        stream = self.tool_streams.get(i)
        if stream is None:
            assert self.prepared.tools is not None
            stream = self.tool_streams[i] = self.prepared.tools.stream(i)
        return stream

    def _finish(self, i: int, engine_finish: str, stop_reason: str | int | None) -> Chunk:
        final, rest = self._open(i).finish(engine_finish, stop_reason)
        result = self.results.get(i // self.n_per_request) or EngineResult()
        sample = self.samples[i] = build_sample(
            self.prepared, i, final, self.records[i].seq, result, start=self.start, end=now(),
            source="stream", token_ids_engine=self.decode is not None,
        )
        last = Chunk(rest, (), i, final.finish_reason)  # type: ignore[arg-type]
        if self.prepared.tools is not None and self.prepared.tools.active:
            return self._tools(i).last(last, sample.finish_reason)
        return last

    def request_done(self, offset: int, request: EngineRequest) -> bool:
        """Whether every sample of the prompt's request `offset` has ended."""
        first = offset * self.n_per_request
        return all(first + k in self.samples for k in range(request.params.n))

    @property
    def done(self) -> bool:
        return all(self.request_done(o, r) for o, r in enumerate(self.prepared.requests))

    def finish(self, aborted: bool = False) -> Iterator[Chunk | Completion]:
        """Close every sample (``length`` if the engine ended silently, ``abort`` if the caller
        stopped), then yield greedy copies and the `Completion`."""
        total = len(self.prepared.requests) * self.n_per_request
        for i in range(total):
            if i not in self.samples:
                yield self._finish(i, "abort" if aborted else "length", None)
        samples = [self.samples[i] for i in range(total)]
        for k in range(1, self.prepared.plan.copies):
            s = copy_sample(self.prepared, samples[0], k)
            calls = None if s.tool_calls is None else tuple(
                ToolCallDelta(j, c.arguments, c.id, c.name) for j, c in enumerate(s.tool_calls))
            yield Chunk(s.text, s.token_ids, k, s.finish_reason, tool_calls=calls,
                        content=s.content if calls is not None else None)
        results = [self.results.get(o) or EngineResult() for o in range(len(self.prepared.requests))]
        yield build_completion(self.calls.engine_name, self.prepared, samples, results)

    def aborted_completion(self) -> Completion:
        """The completion of a stream the caller closed early."""
        *_, completion = self.finish(aborted=True)
        return completion  # type: ignore[return-value]


def stream_items(calls: EngineCalls, assembler: StreamAssembler) -> Iterator[Chunk | Completion]:
    """One prompt's chunks and Completion: its engine requests streamed one after another."""
    assembler.start = now()
    fill_prompt_logprobs(calls, [assembler.prepared])
    for offset, req in enumerate(assembler.prepared.requests):
        events = calls.events(lambda req=req: calls.engine.stream(req))
        try:
            for event in events:
                yield from assembler.on_event(event, offset)
                if assembler.request_done(offset, req):
                    break
        finally:
            events.close()
    yield from assembler.finish()


async def astream_items(calls: EngineCalls,
                        assembler: StreamAssembler) -> AsyncIterator[Chunk | Completion]:
    """`stream_items` for asyncio: the engine's own `astream` where it has one, else its sync
    stream in a worker thread."""
    assembler.start = now()
    await afill_prompt_logprobs(calls, [assembler.prepared])
    for offset, req in enumerate(assembler.prepared.requests):
        events = calls.aevents(req)
        try:
            async for event in events:
                for item in assembler.on_event(event, offset):
                    yield item
                if assembler.request_done(offset, req):
                    break
        finally:
            await events.aclose()  # type: ignore[attr-defined]
    for item in assembler.finish():
        yield item


class Stream:
    """A streaming call: iterate for `Chunk`s. After the last one, `completion` holds the
    same `Completion` a non-streamed call returns (with streaming timing)."""

    def __init__(self, calls: EngineCalls, prepared: Prepared):
        self._assembler = StreamAssembler(calls, prepared)
        self._items = stream_items(calls, self._assembler)
        self.completion: Completion | None = None

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> Chunk:
        item = next(self._items)
        if isinstance(item, Completion):
            self.completion = item
            raise StopIteration
        return item

    @property
    def text(self) -> str:
        """The first sample's full text (consumes the stream if it has not ended)."""
        for _ in self:
            pass
        assert self.completion is not None
        return self.completion.text

    def close(self) -> None:
        """Stop the engine if the stream has not ended; `completion` keeps what was made."""
        self._items.close()  # type: ignore[attr-defined]
        if self.completion is None:
            self.completion = self._assembler.aborted_completion()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStream:
    """The asyncio counterpart of `Stream` (``async for``, ``async with``, ``aclose()``)."""

    def __init__(self, calls: EngineCalls, prepared: Prepared):
        self._assembler = StreamAssembler(calls, prepared)
        self._items = astream_items(calls, self._assembler)
        self.completion: Completion | None = None

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> Chunk:
        item = await self._items.__anext__()
        if isinstance(item, Completion):
            self.completion = item
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Stop the engine if the stream has not ended; `completion` keeps what was made."""
        await self._items.aclose()  # type: ignore[attr-defined]
        if self.completion is None:
            self.completion = self._assembler.aborted_completion()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class MultiStream:
    """`Generator.stream_many`: ``(index, Chunk)`` pairs as the engine produces them, and
    ``(index, Completion)`` once that prompt has ended (its last item). Every prompt gets its
    Completion, also when the engine fails for none of them; an engine failure raises."""

    def __init__(self, calls: EngineCalls, prepared: Sequence[Prepared]):
        self._calls = calls
        self._jobs = list(prepared)
        self._assemblers = [StreamAssembler(calls, job) for job in self._jobs]
        self._done: set[int] = set()
        self._cancelled: set[int] = set()
        self._pending: deque[int] = deque()  # cancelled, Completion not yet handed out
        self._items = self._run()
        self.completions: list[Completion | None] = [None] * len(self._jobs)

    def __iter__(self) -> MultiStream:
        return self

    def __next__(self) -> tuple[int, Chunk | Completion]:
        return next(self._items)

    def cancel(self, index: int) -> None:
        """Stop prompt `index`: the engine stops its tokens, and its Completion (finish reason
        ``abort``) comes out next. Safe to call from any thread; a finished prompt is left
        alone."""
        if index in self._done or index in self._cancelled:
            return
        self._cancelled.add(index)
        for request in self._jobs[index].requests:
            request.abort()
        self._pending.append(index)

    def close(self) -> None:
        """Stop the engine for every prompt still running."""
        self._items.close()

    def __enter__(self) -> MultiStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _end(self, j: int, aborted: bool) -> Iterator[tuple[int, Chunk | Completion]]:
        self._done.add(j)
        for item in self._assemblers[j].finish(aborted=aborted):
            if isinstance(item, Completion):
                self.completions[j] = item
            yield j, item

    def _flush_cancelled(self) -> Iterator[tuple[int, Chunk | Completion]]:
        while self._pending:
            j = self._pending.popleft()
            if j not in self._done:
                yield from self._end(j, aborted=True)

    def _groups(self) -> list[list[tuple[int, int, EngineRequest]]]:
        """(prompt, request offset, request) per engine call, grouped by the one rule."""
        flat = [(j, k, r) for j, job in enumerate(self._jobs) for k, r in enumerate(job.requests)]
        groups = batch_groups([r for _, _, r in flat], self._calls.engine.capabilities)
        return [[flat[i] for i in group] for group in groups]

    def _run(self) -> Iterator[tuple[int, Chunk | Completion]]:
        start = now()
        for a in self._assemblers:
            a.start = start
        fill_prompt_logprobs(self._calls, self._jobs)
        for group in self._groups():
            live = [g for g in group if g[0] not in self._done]
            if not live:
                continue
            requests = [r for _, _, r in live]
            events = self._calls.events(
                lambda r=requests: self._calls.engine.stream_batch(r))
            try:
                for k, event in events:
                    yield from self._flush_cancelled()
                    j, offset, req = live[k]
                    if j in self._done:
                        continue
                    a = self._assemblers[j]
                    for chunk in a.on_event(event, offset):
                        yield j, chunk
                    if a.request_done(offset, req):
                        req.abort()  # an emulated stop fired: free the engine's row
                        if a.done:
                            yield from self._end(j, aborted=False)
            finally:
                events.close()
            yield from self._flush_cancelled()
        yield from self._flush_cancelled()
        for j in range(len(self._jobs)):
            if j not in self._done:
                yield from self._end(j, aborted=j in self._cancelled)

