"""One call spread over the replicas: which part of it went where, what came back, what to
retry (`BatchRun` for `generate`, `StreamRun` for streams), and how a replica's failure is
told from the engine's own error. `ReplicatedEngine` (engine.py) drives these."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..engine import EngineRequest, EngineResult, TokenEvent
from ..errors import EngineError, NoReplicaError, PartialBatchFailure
from ..timing import now
from .wire import Reply, StreamBatch, WireRequest, from_replica, settle


log = logging.getLogger("unillm.distributed")

REPLICA_WAIT_S = 300.0
"""How long a call waits for a replica to come back when none is up (Ray is restarting them)."""


def is_replica_failure(exc: BaseException) -> bool:
    """True for a replica that died or cannot be reached; False for an error the engine raised
    (Ray wraps those in RayTaskError), which fails the call as it would locally."""
    from ray.exceptions import RayError, RayTaskError

    return isinstance(exc, RayError) and not isinstance(exc, RayTaskError)


def unwrap(exc: BaseException) -> BaseException:
    """The engine's own exception out of Ray's RayTaskError wrapper."""
    from ray.exceptions import RayTaskError

    if isinstance(exc, RayTaskError) and isinstance(getattr(exc, "cause", None), BaseException):
        return exc.cause
    return exc


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


@dataclass
class Part:
    """The requests of one call that one replica runs together (a batch, or a stream)."""

    replica: int
    indices: list[int]
    cost: int
    attempt: int
    stream_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    finished: bool = False


class Dispatch:
    """What batch and streaming calls share: the requests on the wire, and what failed.

    The waiting (`ray.wait` or asyncio) is the caller's; everything else is in the
    subclasses, once for the sync and the async path.
    """

    def __init__(self, engine: Any, requests: Sequence[EngineRequest]):
        self.engine = engine
        self.requests = list(requests)
        self.wires = [WireRequest.of(r) for r in self.requests]
        self.errors: dict[int, BaseException] = {}

    def _spread(self, indices: list[int], attempt: int, exclude: frozenset[int]) -> list[Part]:
        """These requests placed on the least loaded replicas, one part per replica (counted
        as outstanding work until released); requests no replica can take fail."""
        try:
            placed = self.engine.balancer.assign([self.wires[k].cost for k in indices], exclude,
                                                 timeout=REPLICA_WAIT_S)
        except NoReplicaError as exc:
            for k in indices:
                self.errors[k] = EngineError(self.engine.name, str(exc))
            return []
        groups: dict[int, list[int]] = {}
        for k, replica in zip(indices, placed):
            groups.setdefault(replica, []).append(k)
        return [Part(replica, ks, sum(self.wires[k].cost for k in ks), attempt)
                for replica, ks in groups.items()]


class BatchRun(Dispatch):
    """One batch call: which part went where, what came back, what to retry."""

    def __init__(self, engine: Any, requests: Sequence[EngineRequest]):
        super().__init__(engine, requests)
        self.start = now()
        self.results: list[EngineResult | None] = [None] * len(self.requests)
        self.engine_error: BaseException | None = None

    def submit(self, indices: list[int], attempt: int = 0,
               exclude: frozenset[int] = frozenset()) -> list[tuple[Any, Part]]:
        """Send these requests, split over the least loaded replicas; (ref, part) pairs."""
        return [(self.engine.actors[part.replica].generate.remote(
                    [self.wires[k] for k in part.indices]), part)
                for part in self._spread(indices, attempt, exclude)]

    def done(self, part: Part, outcome: Reply | BaseException,
             received_at: float) -> list[tuple[Any, Part]]:
        """Record one part's outcome; returns the parts re-sent (retries), if any."""
        eng = self.engine
        eng.balancer.release(part.replica, part.cost)
        if isinstance(outcome, Reply):
            for k, result in zip(part.indices, outcome.results):
                self.results[k] = settle(result, received_at, outcome.busy, self.start,
                                         part.replica)
            return []
        if not is_replica_failure(outcome):
            self.engine_error = self.engine_error or unwrap(outcome)
            return []
        eng._replica_failed(part.replica, outcome)
        if eng.settings.retry and part.attempt == 0:
            log.warning("replica %d failed (%s); re-running its %d requests on another replica",
                        part.replica, first_line(outcome), len(part.indices))
            return self.submit(part.indices, attempt=1, exclude=eng.balancer.avoid(part.replica))
        error = eng._replica_error(part.replica, outcome, retried=part.attempt > 0)
        for k in part.indices:
            self.errors[k] = error
        return []

    def outcome(self) -> list[EngineResult]:
        if self.engine_error is not None:
            raise self.engine_error
        if self.errors:
            raise PartialBatchFailure(self.results, self.errors)
        return self.results  # type: ignore[return-value]


class StreamRun(Dispatch):
    """One streaming call (one request, or a batch through `stream_batch`): which part
    streams where, what reached the caller, what to retry."""

    def __init__(self, engine: Any, requests: Sequence[EngineRequest]):
        super().__init__(engine, requests)
        self.delivered = [0] * len(self.requests)  # events handed to the caller
        self.samples_done: list[set[int]] = [set() for _ in self.requests]
        self.parts: list[Part] = []
        self.aborts_sent: set[int] = set()

    def open(self, indices: list[int], attempt: int = 0,
             exclude: frozenset[int] = frozenset()) -> list[tuple[Any, Part]]:
        """Start streaming these requests on the least loaded replicas: (ref, part) pairs,
        each ref the part's first batch of events."""
        opened = []
        for part in self._spread(indices, attempt, exclude):
            self.parts.append(part)
            opened.append((self.engine.actors[part.replica].open_stream.remote(
                part.stream_id, [self.wires[k] for k in part.indices]), part))
        return opened

    def _finish(self, part: Part) -> None:
        if not part.finished:
            part.finished = True
            self.engine.balancer.release(part.replica, part.cost)

    def handle(self, part: Part, batch: StreamBatch) -> tuple[list[tuple[int, TokenEvent]], Any]:
        """The ``(request index, event)`` pairs to hand on, and the ref of the part's next
        batch (None once it has ended)."""
        events = []
        for local, event in batch.events:
            k = part.indices[local]
            event = from_replica(event, part.replica)
            self.delivered[k] += 1
            if event.finish_reason is not None:
                self.samples_done[k].add(event.index)
            events.append((k, event))
        if batch.done:
            self._finish(part)
            if batch.error is not None:
                raise batch.error  # the engine's own error: fails the call as it would locally
            return events, None
        return events, self.engine.actors[part.replica].poll_stream.remote(part.stream_id)

    def failed(self, part: Part, exc: BaseException) -> list[tuple[Any, Part]]:
        """A call to the part's replica raised: re-open what may be retried, record the rest."""
        self._finish(part)
        if not is_replica_failure(exc):
            raise unwrap(exc)
        eng = self.engine
        eng._replica_failed(part.replica, exc)
        retry, lost = [], []
        for k in part.indices:
            if len(self.samples_done[k]) >= self.wires[k].params.n or k in self.aborts_sent:
                continue  # it had ended: nothing lost
            if eng.settings.retry and part.attempt == 0 and not self.delivered[k]:
                retry.append(k)
            else:
                lost.append(k)
        for k in lost:
            extra = (f"{self.delivered[k]} of its stream events had already reached the caller, "
                     "and a stream is retried only before its first token"
                     if self.delivered[k] else "")
            self.errors[k] = eng._replica_error(part.replica, exc, retried=part.attempt > 0,
                                                extra=extra)
        if not retry:
            return []
        log.warning("replica %d failed before %d streams' first token (%s); retrying on "
                    "another replica", part.replica, len(retry), first_line(exc))
        return self.open(retry, attempt=1, exclude=eng.balancer.avoid(part.replica))

    def send_aborts(self) -> None:
        """Forward `EngineRequest.abort()` calls (made by the caller's thread) to replicas."""
        for k, request in enumerate(self.requests):
            if k in self.aborts_sent or not request.aborted:
                continue
            self.aborts_sent.add(k)
            for part in self.parts:
                if not part.finished and k in part.indices:
                    self.engine.actors[part.replica].abort_stream.remote(
                        part.stream_id, part.indices.index(k))

    def close(self) -> None:
        """The caller stopped, or the call ended: stop whatever still streams."""
        for part in self.parts:
            if not part.finished:
                self._finish(part)
                try:
                    self.engine.actors[part.replica].cancel_stream.remote(part.stream_id)
                except Exception:  # noqa: BLE001 - the replica may be gone: nothing to stop
                    pass

    def raise_errors(self) -> None:
        """After every surviving request has ended: fail with what was lost, if anything."""
        if not self.errors:
            return
        if len(self.requests) == 1:
            raise self.errors[0]
        failed = sorted(self.errors)
        raise EngineError(self.engine.name, f"{len(failed)} of {len(self.requests)} streams "
                          f"failed (requests {failed}): {self.errors[failed[0]]}")


