"""`ContinuousScheduler`: requests join the engine's running batch (continuous batching).

For engines with a `RunningBatch` (transformers through its continuous-batching manager,
llama.cpp through multi-sequence decoding): a request is added to the batch the moment it is
admitted and starts at the engine's next step, whatever else is running; when it ends, or its
client leaves, its slot goes to the next request at once. There is no gathering wait and no
batch to wait for.

A request whose parameters the running batch cannot vary per request (`RunningBatch.refusal`:
e.g. logprobs or penalties on transformers) takes the one-batch-at-a-time path instead
(`MicroBatcher`), counted in ``unillm_static_path_requests_total{reason}``.

Threads: the engine reports each step from its own thread; the step is handed to the event loop
in one `call_soon_threadsafe`, and turned into each request's chunks there (`BatchSession`), so
a ticket is only ever touched on the loop.
"""

from __future__ import annotations

import asyncio

from ..continuous import BatchSession, Member
from ..generator import Generator, Prepared
from ..results import Chunk, Completion
from .config import ServeConfig
from .metrics import ServeMetrics
from .scheduler import InboxTicket, MicroBatcher, QueueFullError, Scheduler, Ticket

Item = Chunk | Completion


class _RunningTicket(InboxTicket):
    def __init__(self, scheduler: ContinuousScheduler, prepared: Prepared, stream: bool):
        super().__init__(scheduler, prepared, stream)
        self.running = scheduler
        self.member: Member | None = None

    def arrive(self, item: Item | BaseException) -> None:
        if isinstance(item, Completion):
            self.running._count_tokens(item)
        self.deliver(item)
        if self.finished:
            self.running._update_size()

    def _cancel(self) -> None:
        if self.member is not None:
            self.running.session.cancel(self.member)  # type: ignore[union-attr]
            self.running._update_size()


class ContinuousScheduler(Scheduler):
    def __init__(self, gen: Generator, config: ServeConfig, metrics: ServeMetrics):
        super().__init__(gen, config, metrics)
        self.fallback = MicroBatcher(gen, config, metrics)
        self.session: BatchSession | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.session = self.gen.batch_session(loop.call_soon_threadsafe)
        if self.session is None:
            raise RuntimeError(f"engine {self.gen.engine_name!r} has no running batch: "
                               "--scheduling continuous needs one (use auto or batch)")
        await self.fallback.start()

    async def stop(self) -> None:
        await self.fallback.stop()

    def submit(self, prepared: Prepared, *, stream: bool) -> Ticket:
        session = self.session
        assert session is not None, "start() first"
        reason = session.refusal(prepared)
        if reason is not None:
            self.metrics.static_path.labels(reason).inc()
            return self.fallback.submit(prepared, stream=stream)
        # The engine queues what it cannot run yet; bound that as the micro-batcher does.
        if session.size >= self.config.max_queue + self.config.max_batch_size:
            self.metrics.rejected.inc()
            raise QueueFullError(1, session.size)
        ticket = _RunningTicket(self, prepared, stream)
        ticket.member = session.join(prepared.claim(), ticket.arrive)
        self._update_size()
        return ticket

    def _update_size(self) -> None:
        if self.session is not None:
            self.metrics.running_batch.set(self.session.size)
