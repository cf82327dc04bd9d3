"""vLLM's engine as a `RunningBatch`: what `unillm serve` and `stream_many` use.

vLLM batches continuously by itself; what this adds is the hand-over. A stream
(`VllmEngine.astream`) crosses from the engine thread to the caller's event loop once per
request per step; a server of 64 streams then wakes its loop 64 times per step, and each
token climbs through several async generators. Here each step's outputs for all the requests
of one consumer go over in one call (`StepSink`), and the core turns them into chunks in one
pass (`unillm.continuous.BatchSession`). vLLM honours every parameter per request, so nothing
is refused.
"""

from __future__ import annotations

import threading
from typing import Any

from ..engine import EngineRequest, EngineResult, RunningBatch, StepSink, TokenEvent
from . import _vllm_driver as driver


class _SinkBuffer:
    """One consumer's events of the current step."""

    def __init__(self, sink: StepSink):
        self.sink = sink
        self.events: list[tuple[EngineRequest, TokenEvent | BaseException]] = []
        self.lock = threading.Lock()
        self.requests = 0  # of this sink, in the engine now

    def add(self, request: EngineRequest, event: TokenEvent | BaseException) -> None:
        with self.lock:
            self.events.append((request, event))

    def flush(self) -> None:
        with self.lock:
            events, self.events = self.events, []
        if events:
            self.sink(events)


class _Waiter(driver.Waiter):
    """One request's outputs, as events, into its consumer's buffer."""

    def __init__(self, engine: Any, request: EngineRequest, record: dict[str, Any],
                 buffer: _SinkBuffer, done: Any):
        self.engine, self.request, self.buffer, self.done = engine, request, buffer, done
        self.record = record
        self.result: EngineResult | None = EngineResult(received=record)

    def deliver(self, output: Any) -> None:
        # No prompt logprobs here: the running batch refuses requests that ask for them.
        for event in self.engine._events(output, self.request.params.logprobs, self.record,
                                         None):
            if self.result is not None:  # what ran, with the first event
                event.result, self.result = self.result, None
            self.buffer.add(self.request, event)
        if output.finished:
            self.done(self.request)

    def fail(self, error: BaseException) -> None:
        self.buffer.add(self.request, error)
        self.buffer.flush()
        self.done(self.request)

    def flush(self) -> None:
        self.buffer.flush()


class VllmRunningBatch(RunningBatch):
    def __init__(self, engine: Any):
        self.engine = engine
        self._ids: dict[EngineRequest, tuple[str, _SinkBuffer]] = {}
        self._buffers: dict[int, _SinkBuffer] = {}
        self._lock = threading.Lock()

    def refusal(self, request: EngineRequest) -> str | None:
        # The prompt's logprobs come with the request's final output, which the step handoff
        # does not carry: those requests take the engine's own stream.
        return "prompt_logprobs" if request.params.prompt_logprobs is not None else None

    def add(self, request: EngineRequest, sink: StepSink) -> None:
        engine = self.engine
        (item,), (record,) = engine._items([request], engine.kinds.DELTA)
        with self._lock:
            buffer = self._buffers.get(id(sink))
            if buffer is None:
                buffer = self._buffers[id(sink)] = _SinkBuffer(sink)
            buffer.requests += 1
            self._ids[request] = (item[0], buffer)
        try:
            engine.driver.submit([item], _Waiter(engine, request, record, buffer, self._forget))
        except BaseException:
            self._forget(request)
            raise

    def _forget(self, request: EngineRequest) -> str | None:
        """Drop the request's entry (and its sink's buffer with its last request)."""
        with self._lock:
            entry = self._ids.pop(request, None)
            if entry is None:
                return None
            request_id, buffer = entry
            buffer.requests -= 1
            if not buffer.requests:
                self._buffers.pop(id(buffer.sink), None)
        return request_id

    def cancel(self, request: EngineRequest) -> None:
        request_id = self._forget(request)
        if request_id is not None:
            self.engine.driver.abort([request_id])
