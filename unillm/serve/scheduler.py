"""Getting many concurrent requests into the engine without running them one at a time.

Schedulers behind one interface (`submit` -> `Ticket`); serve/choice.py picks one. Engines
with a running batch (continuous batching: transformers, llama.cpp) get `ContinuousScheduler`
(serve/running.py), which falls back on the `MicroBatcher` below for the requests that batch
cannot take. Here:

- `MicroBatcher` for engines that run one batch at a time (transformers, CTranslate2,
  llama.cpp): requests queue; when the engine is free, the oldest request and every queued
  request that can share its native batch (same engine parameters, up to `max_batch_size`)
  run as one `Generator.stream_many` call. Streams are batched where the engine can stream a
  batch (`Generator.batches_streams`); elsewhere non-streaming requests still share a native
  `generate` batch and streams run one after another.

  How long to wait for others: a request that just misses a batch waits for the whole batch
  to finish, so waiting a small fraction of a batch's duration for a burst's stragglers is
  cheap, and waiting longer is not. The gathering ends after a quiet spell with no new
  arrival (`batch_wait`, or 2 % of the recent batch duration if longer: a busy event loop
  admits a burst slowly; 5 % once a second request has joined, since a burst is then
  arriving and its stragglers come late on a loaded machine) and at most 25 % of the recent
  batch duration after the oldest request arrived (at least the quiet spell, never more than
  `max_batch_wait`). A lone request on an idle server waits one quiet spell. Requests that
  queued while the previous batch ran start at once when it ends.
- `DirectScheduler` for engines that schedule concurrent requests themselves (vLLM's async
  engine, HTTP engines): each request goes to the engine's own `astream` at once, up to
  `max_concurrency` at a time.

Both bound their queue (`max_queue`): past it `submit` raises `QueueFullError` (a 429), so a
flood of clients costs a refusal, not unbounded memory. A ticket closed before its end
(client gone) leaves the queue, or has its generation cancelled in the engine.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import math
import time
from collections.abc import AsyncIterator, Hashable
from typing import Any

from ..errors import GeneratorClosedError, QueueFullError
from ..generator import Generator, Prepared
from ..results import Chunk, Completion, Completions
from .config import ServeConfig
from .metrics import ServeMetrics
from .pump import pump as _pump

Item = Chunk | Completion


class Ticket(abc.ABC):
    """One admitted prompt: iterate `batches()` (or `events()`) for its Chunks then its
    Completion; `close()` when done with it, always (it cancels an unfinished generation and
    frees the slot)."""

    def __init__(self, scheduler: Scheduler, prepared: Prepared, stream: bool):
        self.scheduler = scheduler
        self.prepared = prepared
        self.stream = stream
        self.finished = False
        self.closed = False
        scheduler.metrics.in_flight.inc()

    @abc.abstractmethod
    def batches(self) -> AsyncIterator[list[Item]]:
        """The items in lists: each holds every item that was ready when it was taken, so a
        writer that lags behind the engine sends them in one write instead of one each."""

    async def events(self) -> AsyncIterator[Item]:
        """The items one by one."""
        batches = self.batches()
        try:
            async for items in batches:
                for item in items:
                    yield item
        finally:
            await batches.aclose()  # type: ignore[attr-defined]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.finished:
            self._cancel()
        self.scheduler.metrics.in_flight.dec()

    @abc.abstractmethod
    def _cancel(self) -> None: ...


class Scheduler(abc.ABC):
    def __init__(self, gen: Generator, config: ServeConfig, metrics: ServeMetrics):
        self.gen = gen
        self.config = config
        self.metrics = metrics

    @abc.abstractmethod
    def submit(self, prepared: Prepared, *, stream: bool) -> Ticket:
        """Admit a prepared prompt, or raise `QueueFullError`."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        pass

    async def stop(self) -> None:  # noqa: B027 - optional hook
        pass

    def _count_tokens(self, completion: Completion) -> None:
        samples = completion.samples
        if samples and samples[0].timing.prompt_tokens is not None:
            self.metrics.prompt_tokens.inc(samples[0].timing.prompt_tokens)
        self.metrics.generation_tokens.inc(sum(s.timing.output_tokens for s in samples))
        for s in samples:
            self.metrics.finished.labels(s.finish_reason).inc()


class InboxTicket(Ticket):
    """A ticket whose items are delivered to it on the event loop (`deliver`)."""

    def __init__(self, scheduler: Scheduler, prepared: Prepared, stream: bool):
        super().__init__(scheduler, prepared, stream)
        # Items delivered and not yet taken, and the future the reader waits on when there are
        # none: one wake-up per burst of items, not one per item (cheaper than a Queue).
        self.ready: list[Item | BaseException] = []
        self.waiter: asyncio.Future[None] | None = None

    async def batches(self) -> AsyncIterator[list[Item]]:
        while True:
            if not self.ready:
                self.waiter = asyncio.get_running_loop().create_future()
                try:
                    await self.waiter
                finally:
                    self.waiter = None
            items, self.ready = self.ready, []
            failed = next((i for i, item in enumerate(items)
                           if isinstance(item, BaseException)), None)
            if failed is not None:
                if failed:
                    yield items[:failed]  # type: ignore[misc]
                raise items[failed]  # type: ignore[misc]
            yield items  # type: ignore[misc]
            if isinstance(items[-1], Completion):
                return

    def deliver(self, item: Item | BaseException) -> None:
        if isinstance(item, (Completion, BaseException)):
            self.finished = True
        if not self.closed:
            self.ready.append(item)
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)


# -- micro-batching ----------------------------------------------------------------------------
class _BatchTicket(InboxTicket):
    def __init__(self, batcher: MicroBatcher, prepared: Prepared, stream: bool, key: Hashable):
        super().__init__(batcher, prepared, stream)
        self.batcher = batcher
        self.key = key
        self.arrival = time.monotonic()
        self.running: tuple[Any, int] | None = None  # (MultiStream, index) once started

    def _cancel(self) -> None:
        if self.running is None:
            self.batcher._dequeue(self)
        else:
            stream, index = self.running
            stream.cancel(index)


class MicroBatcher(Scheduler):
    def __init__(self, gen: Generator, config: ServeConfig, metrics: ServeMetrics):
        super().__init__(gen, config, metrics)
        self._queue: collections.deque[_BatchTicket] = collections.deque()
        self._arrived = asyncio.Event()
        self._last_arrival = 0.0
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._batch_seconds = 0.0  # moving average of batch durations (0: none ran yet)
        self._per_request = gen.capabilities.batch_params == "per_request"

    def submit(self, prepared: Prepared, *, stream: bool) -> Ticket:
        if len(self._queue) >= self.config.max_queue:
            self.metrics.rejected.inc()
            raise QueueFullError(self.retry_after(), len(self._queue))
        ticket = _BatchTicket(self, prepared, stream, None)
        ticket.key = self._key(ticket)
        self._queue.append(ticket)
        self._last_arrival = ticket.arrival
        self.metrics.queue_depth.set(len(self._queue))
        self._arrived.set()
        return ticket

    def retry_after(self) -> int:
        """Seconds until the queue has likely moved by one batch."""
        return max(1, math.ceil(self._batch_seconds))

    def _waits(self, gathered: int) -> tuple[float, float]:
        """(quiet spell, longest wait) for a batch of `gathered` requests so far (see the
        module doc)."""
        cfg = self.config
        share = 0.05 if gathered > 1 else 0.02
        quiet = min(max(cfg.batch_wait, share * self._batch_seconds), cfg.max_batch_wait)
        longest = min(max(quiet, 0.25 * self._batch_seconds), cfg.max_batch_wait)
        return quiet, longest

    def _key(self, ticket: _BatchTicket) -> Hashable:
        """Tickets with equal keys may share a native batch."""
        prepared = ticket.prepared
        if any(r.params.seed is not None and not r.params.is_greedy for r in prepared.requests):
            # A seeded sample must not depend on its batch-mates: it runs alone, so the server
            # returns what the same call through the library returns.
            return ("alone", id(ticket))
        params = None if self._per_request else prepared.batch_key
        # Without batched streaming, streams and non-streams take different paths.
        return (params, ticket.stream and not self.gen.batches_streams)

    def _dequeue(self, ticket: _BatchTicket) -> None:
        try:
            self._queue.remove(ticket)
        except ValueError:
            return
        self.metrics.queue_depth.set(len(self._queue))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="unillm-microbatcher")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        self._stopping = True
        self._arrived.set()
        if self._task is not None:
            try:
                await self._task
            finally:
                self._task = None

    async def _loop(self) -> None:
        while True:
            while not self._queue:
                if self._stopping:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            batch = await self._gather()
            if batch:
                await self._run(batch)

    async def _gather(self) -> list[_BatchTicket]:
        cfg = self.config
        while self._queue:
            oldest = self._queue[0]
            same = sum(1 for t in self._queue if t.key == oldest.key)
            if same >= cfg.max_batch_size or self._stopping:
                break
            quiet, longest = self._waits(same)
            now = time.monotonic()
            until = min(oldest.arrival + longest, self._last_arrival + quiet)
            if now >= until:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), until - now)
            except TimeoutError:
                pass
        if not self._queue:
            return []
        key = self._queue[0].key
        batch = [t for t in self._queue if t.key == key][: cfg.max_batch_size]
        taken = set(map(id, batch))
        self._queue = collections.deque(t for t in self._queue if id(t) not in taken)
        self.metrics.queue_depth.set(len(self._queue))
        return batch

    async def _run(self, batch: list[_BatchTicket]) -> None:
        self.metrics.batch_size.observe(len(batch))
        self.metrics.batches_running.inc()
        started = time.monotonic()
        try:
            if batch[0].stream or self.gen.batches_streams:
                await self._run_streams(batch)
            else:
                await self._run_generate(batch)
        except asyncio.CancelledError:
            for t in batch:
                t.deliver(GeneratorClosedError("the server is shutting down"))  # a 503
            raise
        except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
            for t in batch:
                t.deliver(exc)
        finally:
            self.metrics.batches_running.dec()
            elapsed = time.monotonic() - started
            self._batch_seconds = (elapsed if not self._batch_seconds
                                   else 0.8 * self._batch_seconds + 0.2 * elapsed)

    async def _run_streams(self, batch: list[_BatchTicket]) -> None:
        multi = self.gen.stream_many([t.prepared for t in batch])
        for index, t in enumerate(batch):
            t.running = (multi, index)
            if t.closed:  # the client left while the batch was being formed
                multi.cancel(index)

        def deliver(items: list[tuple[int, Item]]) -> None:
            for index, item in items:
                if isinstance(item, Completion):
                    self._count_tokens(item)
                batch[index].deliver(item)

        await _pump(multi, deliver)

    async def _run_generate(self, batch: list[_BatchTicket]) -> None:
        for t in batch:
            t.running = (_NotCancellable, 0)
        results: Completions = await self.gen.agenerate([t.prepared for t in batch])
        for t, completion in zip(batch, results):
            self._count_tokens(completion)
            t.deliver(completion)


class _NotCancellable:
    """A native `generate` batch runs to its end; a client that leaves just stops listening."""

    @staticmethod
    def cancel(index: int) -> None:
        pass


# -- direct ------------------------------------------------------------------------------------
class _DirectTicket(Ticket):
    def __init__(self, scheduler: DirectScheduler, prepared: Prepared, stream: bool):
        super().__init__(scheduler, prepared, stream)
        self.direct = scheduler
        self.waiting = True

    async def batches(self) -> AsyncIterator[list[Item]]:
        # The engine's own stream hands over one item at a time.
        events = self.events()
        try:
            async for item in events:
                yield [item]
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def events(self) -> AsyncIterator[Item]:
        sched = self.direct
        try:
            await sched._slots.acquire()
        finally:
            self._stop_waiting()
        try:
            stream = sched.gen.astream(self.prepared)
            try:
                async for chunk in stream:
                    yield chunk
            finally:
                await stream.aclose()  # stops the engine if the client left
                if stream.completion is not None:
                    sched._count_tokens(stream.completion)
            completion = stream.completion
            assert completion is not None
            self.finished = True
            yield completion
        finally:
            sched._slots.release()

    def _stop_waiting(self) -> None:
        if self.waiting:
            self.waiting = False
            self.direct._waiting -= 1
            self.direct.metrics.queue_depth.set(self.direct._waiting)

    def _cancel(self) -> None:
        # The engine stream is closed by `events()`'s own clean-up; a ticket that never
        # started only leaves the queue count.
        self._stop_waiting()


class DirectScheduler(Scheduler):
    def __init__(self, gen: Generator, config: ServeConfig, metrics: ServeMetrics):
        super().__init__(gen, config, metrics)
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._waiting = 0

    def submit(self, prepared: Prepared, *, stream: bool) -> Ticket:
        if self._waiting >= self.config.max_queue:
            self.metrics.rejected.inc()
            raise QueueFullError(1, self._waiting)
        self._waiting += 1
        self.metrics.queue_depth.set(self._waiting)
        return _DirectTicket(self, prepared, stream)
