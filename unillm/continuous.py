"""Prompts in an engine's running batch (continuous batching), seen from the core.

An engine's `RunningBatch` reports each step's tokens from its own thread; a `BatchSession`
hands them to one consumer's thread (an asyncio loop, or the thread iterating a
`RunningMultiStream`) with one wake-up per step, and there turns them into each prompt's chunks
and Completion with the same `StreamAssembler` a `Stream` uses, so detokenizing, stop strings,
`n`, timing and finish reasons mean exactly what they mean on every other path.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .engine import EngineRequest, RunningBatch, StepSink, TokenEvent
from .prepared import Prepared
from .results import Chunk, Completion
from .streams import MultiStream, StreamAssembler
from .timing import now

if TYPE_CHECKING:
    from .calls import EngineCalls

Item = Chunk | Completion
Deliver = Callable[["Item | BaseException"], None]
Dispatch = Callable[[Callable[[Any], None], Any], None]
"""``dispatch(fn, arg)`` runs ``fn(arg)`` on the consumer's thread, later (thread-safe)."""


class Member:
    """One prompt of a session: its assembler, and where its items go."""

    __slots__ = ("assembler", "deliver", "ended", "prepared")

    def __init__(self, prepared: Prepared, assembler: StreamAssembler, deliver: Deliver):
        self.prepared = prepared
        self.assembler = assembler
        self.deliver = deliver
        self.ended = False


class BatchSession:
    """One consumer's prompts in an engine's running batch.

    `join` and `cancel` are called on the consumer's thread, where `dispatch` also runs the
    step handler, so a prompt's assembler is only ever touched there.
    """

    def __init__(self, calls: EngineCalls, running: RunningBatch, dispatch: Dispatch):
        self.calls = calls
        self.running = running
        self._dispatch = dispatch
        self._members: dict[EngineRequest, tuple[Member, int]] = {}
        # One object for every request of this session: engines group a step's events by
        # sink (a bound method is a new object at each attribute access).
        self.sink: StepSink = self._from_engine

    def _from_engine(self, events: list[tuple[EngineRequest, TokenEvent | BaseException]]) -> None:
        """The `StepSink` the engine calls, from its thread, once per step."""
        self._dispatch(self._on_step, events)

    def refusal(self, prepared: Prepared) -> str | None:
        """None if every engine request of the prompt can join the batch, else why not (the
        first parameter the batch cannot honour)."""
        for request in prepared.requests:
            reason = self.running.refusal(request)
            if reason is not None:
                return reason
        return None

    @property
    def size(self) -> int:
        """Engine requests of this session in the batch now."""
        return len(self._members)

    def join(self, prepared: Prepared, deliver: Deliver, *, cancelled: bool = False) -> Member:
        """Add a claimed prompt (`Prepared.claim`) to the running batch; `deliver` gets its
        chunks, then its Completion (or an exception), on the consumer's thread. A prompt
        `cancelled` before it joined gets its ``abort`` Completion without reaching the
        engine."""
        assembler = StreamAssembler(self.calls, prepared)
        assembler.start = now()
        member = Member(prepared, assembler, deliver)
        if cancelled:
            self._end(member, aborted=True)
            return member
        try:
            for offset, request in enumerate(prepared.requests):
                self._members[request] = (member, offset)
                self.running.add(request, self.sink)
        except BaseException as exc:
            self._leave(member)
            raise self.calls.wrap(exc) from exc
        if not prepared.requests:  # nothing to run (cannot happen for a planned prompt)
            self._end(member, aborted=False)
        return member

    def cancel(self, member: Member) -> None:
        """Stop the prompt: its engine requests leave the batch (their slots freed), and its
        Completion (finish reason ``abort``) is delivered."""
        if member.ended:
            return
        self._leave(member)
        self._end(member, aborted=True)

    def _leave(self, member: Member) -> None:
        for request in member.prepared.requests:
            if self._members.pop(request, None) is not None:
                self.running.cancel(request)

    def _end(self, member: Member, aborted: bool) -> None:
        member.ended = True
        for item in member.assembler.finish(aborted=aborted):
            member.deliver(item)

    def _on_step(self, events: list[tuple[EngineRequest, TokenEvent | BaseException]]) -> None:
        for request, event in events:
            entry = self._members.get(request)
            if entry is None:  # cancelled while this step was on its way
                continue
            member, offset = entry
            if isinstance(event, BaseException):
                self._leave(member)
                member.ended = True
                member.deliver(self.calls.wrap(event))
                continue
            assembler = member.assembler
            ended = False  # a sample of this request ended (its chunk names why)
            for chunk in assembler.on_event(event, offset):
                member.deliver(chunk)
                ended = ended or chunk.finish_reason is not None
            if ended and assembler.request_done(offset, request):
                # Done here (eos, length, or a stop string the core matched): free the slot.
                if self._members.pop(request, None) is not None and event.finish_reason is None:
                    self.running.cancel(request)
                if assembler.done and not member.ended:
                    self._end(member, aborted=False)


class RunningMultiStream(MultiStream):
    """`Generator.stream_many` through the engine's running batch: every prompt joins it at
    once and leaves it when it ends (or is cancelled), the others going on. Iterated in the
    caller's thread, like `MultiStream`, whose interface it keeps."""

    def __init__(self, calls: EngineCalls, running: RunningBatch, prepared: Sequence[Prepared]):
        self._running = running
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._session = BatchSession(calls, running, lambda fn, arg: self._inbox.put((fn, arg)))
        self._members: list[Member] = []
        self._out: deque[tuple[int, Item]] = deque()
        self._failure: BaseException | None = None
        self._lock = threading.Lock()
        super().__init__(calls, prepared)

    def cancel(self, index: int) -> None:
        """Stop prompt `index` (thread-safe): it leaves the running batch, and its Completion
        (finish reason ``abort``) comes out next."""
        with self._lock:
            if index in self._cancelled:
                return
            self._cancelled.add(index)
        for request in self._jobs[index].requests:
            request.abort()
        self._inbox.put((self._cancel_now, index))

    def _cancel_now(self, index: int) -> None:
        if index < len(self._members):
            self._session.cancel(self._members[index])

    def _deliver(self, index: int) -> Deliver:
        def deliver(item: Item | BaseException) -> None:
            if isinstance(item, BaseException):
                if self._failure is None:
                    self._failure = item
                return
            if isinstance(item, Completion):
                self.completions[index] = item
                self._done.add(index)
            self._out.append((index, item))

        return deliver

    def _run(self) -> Iterator[tuple[int, Item]]:
        session = self._session
        try:
            for j, job in enumerate(self._jobs):
                self._members.append(session.join(job, self._deliver(j),
                                                  cancelled=j in self._cancelled))
            while True:
                while self._out:
                    yield self._out.popleft()
                if self._failure is not None:
                    raise self._failure
                if len(self._done) == len(self._jobs):
                    return
                fn, arg = self._inbox.get()
                fn(arg)
        finally:
            for member in self._members:
                if not member.ended:
                    session._leave(member)  # the engine stops it; nobody is listening
