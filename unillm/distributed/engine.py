"""`ReplicatedEngine`: one `Engine` in the driver, N real engines in Ray actors behind it.

The driver's `Generator` is unchanged: it plans, tokenizes, decodes, applies stop rules and
times every call exactly as for a local engine, and hands this engine `EngineRequest`s. This
engine only decides which replica runs each request (balancer.py), moves requests and results
across processes (wire.py) and handles replicas that die:

- A replica whose process dies fails only the requests it was running. Without `retry` they
  fail with `EngineError` (in a batch call, `unillm.BatchError` carries the other prompts'
  completions); with `retry` they are re-run once on another replica. Streams are retried only
  if no token had reached the caller yet: re-running a stream would repeat tokens.
- Ray restarts the dead replica (`max_restarts`); until it answers again it gets no new work,
  so the generator keeps serving on the others.
- An error raised by the engine itself (a bad request) is not a replica failure: it fails the
  call exactly as it would locally, and is never retried.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from typing import Any

from ..engine import Engine, EngineRequest, EngineResult, TokenEvent
from ..errors import EngineError, InvalidParameterError, UnillmError
from ..timing import now
from . import cluster
from .balancer import Balancer
from .settings import ReplicaSettings
from .dispatch import BatchRun, Part, StreamRun, first_line, unwrap
from .wire import Description, Reply

log = logging.getLogger("unillm.distributed")

ABORT_POLL_S = 0.05
"""How often a streaming batch looks for requests its caller aborted while waiting for tokens."""

PENDING_WARN_S = 60.0
"""Replicas not up after this long: say which resources they wait for."""


class _RemoteTokenizer:
    """Fallback for an engine whose tokenizer cannot travel to the driver: each call is a
    round trip to a replica (correct, but slower: prefer engines with HF tokenizers)."""

    def __init__(self, engine: ReplicatedEngine):
        self._engine = engine
        ray = cluster.import_ray()
        self.eos_token_ids = ray.get(engine._any_actor().tokenizer_eos.remote())

    def _call(self, method: str, *args: Any) -> Any:
        ray = cluster.import_ray()
        return ray.get(self._engine._any_actor().tokenizer_call.remote(method, *args))

    def encode(self, text: str) -> list[int]:
        return self._call("encode", text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._call("decode", list(ids))

    def decode_with_special(self, ids: Sequence[int]) -> str:
        return self._call("decode_with_special", list(ids))

    def chat_token_ids(self, messages, tools=None) -> list[int]:
        if tools:
            return self._call("chat_token_ids", [dict(m) for m in messages], list(tools))
        return self._call("chat_token_ids", [dict(m) for m in messages])

    def chat_text(self, messages, tools=None) -> str:
        if tools:
            return self._call("chat_text", [dict(m) for m in messages], list(tools))
        return self._call("chat_text", [dict(m) for m in messages])


class ReplicatedEngine(Engine):
    """N replicas of one engine on Ray, presented as one `Engine` (see module doc)."""

    local = True

    def __init__(self, engine: str, model: str, options: dict[str, Any], settings: ReplicaSettings):
        self.settings = settings
        self.name = engine  # until the replicas report the registered name
        self._closed = False
        self._watching: set[int] = set()
        self._watch_lock = threading.Lock()
        self.where, started_here = cluster.connect(settings.ray_address)
        try:
            ray = cluster.import_ray()
            self._check_resources(ray, started_here)
            from .worker import ReplicaWorker

            actor_cls = ray.remote(ReplicaWorker).options(**settings.actor_options())
            self.actors = [actor_cls.remote(engine, model, dict(options))
                           for _ in range(settings.replicas)]
            descriptions = self._wait_ready(ray)
        except BaseException:
            self._kill_actors()
            cluster.disconnect()
            raise
        desc = descriptions[0]
        super().__init__(model, desc.options)
        self.name = desc.engine
        self.local = desc.local
        # The driver's Generator may call concurrently (each replica serialises its own
        # engine), and hands over a whole call at once (per_request): it is balanced over the
        # replicas as one, and each replica groups its share by parameters as its engine needs.
        self.capabilities = replace(
            desc.capabilities, concurrent=True, batch_params="per_request", score=False,
            score_refusal="scoring does not go through Ray replicas yet (load the engine "
            "without replicas=)")
        self.context_length = desc.context_length
        self.nodes = [d.node for d in descriptions]
        self.balancer = Balancer(settings.replicas)
        self.tokenizer = self._driver_tokenizer(desc)

    # -- setting up ------------------------------------------------------------------------
    def _check_resources(self, ray, started_here: bool) -> None:
        """On a local Ray we started (no autoscaler), refuse what can never be scheduled."""
        if not started_here:
            return
        total = ray.cluster_resources()
        s = self.settings
        for name, per in (("num_cpus", s.num_cpus), ("num_gpus", s.num_gpus)):
            have = total.get("CPU" if name == "num_cpus" else "GPU", 0.0)
            if per * s.replicas > have:
                raise InvalidParameterError(
                    name, per, f"{s.replicas} replicas x {per} exceeds the {have:g} this "
                    f"machine's Ray has; lower {name} (fractions are allowed) or replicas",
                    owner="unillm.load")

    def _wait_ready(self, ray) -> list[Description]:
        refs = [a.describe.remote() for a in self.actors]
        waited = 0.0
        while True:
            ready, pending = ray.wait(refs, num_returns=len(refs), timeout=PENDING_WARN_S)
            if not pending:
                break
            waited += PENDING_WARN_S
            log.warning(
                "%d of %d replicas not up after %.0f s; each asks for %s; the cluster has %s "
                "available", len(pending), len(refs), waited,
                {k: v for k, v in self.settings.actor_options().items() if k.startswith("num_")},
                ray.available_resources())
        out = []
        for ref in refs:
            try:
                out.append(ray.get(ref))
            except Exception as exc:
                cause = unwrap(exc)
                if isinstance(cause, UnillmError):
                    raise cause from None
                raise EngineError(self.name, f"a replica failed to start: "
                                  f"{first_line(cause)}") from exc
        return out

    def _driver_tokenizer(self, desc: Description):
        """The engine's own tokenizer, unpickled here when it can travel (an HF tokenizer:
        needs `transformers` in the driver, not torch nor the weights); otherwise one that asks
        a replica."""
        if not desc.has_tokenizer:
            return None
        if desc.tokenizer is not None:
            try:
                return pickle.loads(desc.tokenizer)
            except Exception as exc:  # noqa: BLE001 - e.g. transformers missing in the driver
                log.warning("the replicas' tokenizer cannot be loaded here (%s); tokenizing "
                            "through a replica instead (slower)", first_line(exc))
        return _RemoteTokenizer(self)

    # -- replica health --------------------------------------------------------------------
    def _any_actor(self):
        """A replica that is up (the first, if none is: its calls then fail clearly)."""
        up = self.balancer.snapshot()["up"]
        return self.actors[up.index(True) if True in up else 0]

    def _replica_failed(self, replica: int, exc: BaseException) -> None:
        """Take the replica out of rotation and watch for Ray's restart of it."""
        if self.balancer.mark_down(replica):
            log.warning("replica %d failed: %s", replica, first_line(exc))
        with self._watch_lock:
            if replica in self._watching or self._closed:
                return
            self._watching.add(replica)
        threading.Thread(target=self._watch, args=(replica,), daemon=True,
                         name=f"unillm-replica-{replica}-watch").start()

    def _watch(self, replica: int) -> None:
        """Ping a failed replica until it answers (restarted) or is dead for good."""
        from ray.exceptions import ActorDiedError, GetTimeoutError, RayError, RayTaskError

        ray = cluster.import_ray()
        try:
            while not self._closed:
                try:
                    ray.get(self.actors[replica].ping.remote(), timeout=30)
                    self.balancer.mark_up(replica)
                    log.warning("replica %d is back", replica)
                    return
                except (ActorDiedError, RayTaskError) as exc:
                    # Restarts exhausted, or the restarted replica could not load its engine.
                    log.error("replica %d is gone: %s", replica, first_line(unwrap(exc)))
                    self.balancer.mark_gone(replica)
                    try:  # a replica that restarted without its engine still holds resources
                        ray.kill(self.actors[replica], no_restart=True)
                    except Exception:  # noqa: BLE001 - already dead
                        pass
                    return
                except (GetTimeoutError, RayError):
                    time.sleep(0.2)  # restarting: Ray refuses calls until it is up
        finally:
            with self._watch_lock:
                self._watching.discard(replica)

    def _replica_error(self, replica: int, exc: BaseException, *, retried: bool,
                       extra: str = "") -> EngineError:
        what = "the retry on replica" if retried else "replica"
        restart = ("Ray is restarting it" if self.settings.max_restarts != 0
                   else "it is not restarted (max_restarts=0)")
        hint = "" if (self.settings.retry or extra) else "; pass retry=True to re-run such requests on another replica"
        error = EngineError(
            self.name,
            f"{what} {replica} died while running this request ({first_line(exc)}); "
            f"{restart}{'; ' + extra if extra else ''}{hint}",
        )
        error.__cause__ = exc
        return error

    # -- batch -----------------------------------------------------------------------------
    def generate(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        ray = cluster.import_ray()
        run = BatchRun(self, requests)
        pending = dict(run.submit(list(range(len(run.requests)))))
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            received_at = now()
            ref = ready[0]
            part = pending.pop(ref)
            try:
                outcome: Reply | BaseException = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - classified in done()
                outcome = exc
            pending.update(run.done(part, outcome, received_at))
        return run.outcome()

    async def agenerate(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        run = BatchRun(self, requests)
        # submit may wait for a replica to come back: never on the event loop.
        sent = await asyncio.to_thread(run.submit, list(range(len(run.requests))))
        tasks = {asyncio.ensure_future(_awaited(ref)): part for ref, part in sent}
        while tasks:
            finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            received_at = now()
            for task in finished:
                part = tasks.pop(task)
                outcome = task.result()
                if isinstance(outcome, BaseException) and self.settings.retry:
                    # a retry may wait for a replica to come back: not on the event loop
                    retried = await asyncio.to_thread(run.done, part, outcome, received_at)
                else:
                    retried = run.done(part, outcome, received_at)
                for ref, new_part in retried:
                    tasks[asyncio.ensure_future(_awaited(ref))] = new_part
        return run.outcome()

    # -- streaming -------------------------------------------------------------------------
    def stream(self, request: EngineRequest) -> Iterator[TokenEvent]:
        for _, event in self.stream_batch([request]):
            yield event

    def stream_batch(self, requests: Sequence[EngineRequest]) -> Iterator[tuple[int, TokenEvent]]:
        """Stream several requests at once, spread over the replicas like a batch; each
        replica streams its share as one batch if its engine can. ``(index, event)`` pairs.

        A replica that dies ends only its requests: the others stream to their end, then the
        call raises `EngineError` naming the lost ones (the others' events were delivered)."""
        ray = cluster.import_ray()
        run = StreamRun(self, requests)
        # Per-request aborts (EngineRequest.abort) are checked between batches of events, at
        # least every ABORT_POLL_S.
        try:
            pending = dict(run.open(list(range(len(run.requests)))))
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=ABORT_POLL_S)
                run.send_aborts()
                for ref in ready:
                    part = pending.pop(ref)
                    try:
                        batch = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - classified in failed()
                        pending.update(run.failed(part, exc))
                        continue
                    events, follow = run.handle(part, batch)
                    yield from events
                    if follow is not None:
                        pending[follow] = part
            run.raise_errors()
        finally:
            run.close()

    async def astream(self, request: EngineRequest) -> AsyncIterator[TokenEvent]:  # type: ignore[override]
        run = StreamRun(self, [request])
        tasks: dict[asyncio.Future, Part] = {}
        try:
            # open() may wait for a replica to come back: never on the event loop.
            for ref, part in await asyncio.to_thread(run.open, [0]):
                tasks[asyncio.ensure_future(_awaited(ref))] = part
            while tasks:
                finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    part = tasks.pop(task)
                    outcome = task.result()
                    if isinstance(outcome, BaseException):
                        for ref, new_part in await asyncio.to_thread(run.failed, part, outcome):
                            tasks[asyncio.ensure_future(_awaited(ref))] = new_part
                        continue
                    events, follow = run.handle(part, outcome)
                    for _, event in events:
                        yield event
                    if follow is not None:
                        tasks[asyncio.ensure_future(_awaited(follow))] = part
            run.raise_errors()
        finally:
            for task in tasks:
                task.cancel()
            run.close()

    # -- facts and lifetime ----------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        ray = cluster.import_ray()
        inner = ray.get(self._any_actor().info.remote())
        s = self.settings
        return {
            **inner,
            "replicas": s.replicas,
            "ray": self.where,
            "replica_resources": {"num_cpus": s.num_cpus, "num_gpus": s.num_gpus},
            "retry": s.retry,
            "max_restarts": s.max_restarts,
            "replica_nodes": self.nodes,
            "replica_state": self.balancer.snapshot(),
        }

    def _kill_actors(self) -> None:
        ray = cluster.import_ray()
        for actor in getattr(self, "actors", ()):
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        ray = cluster.import_ray()
        closing = [a.close.remote() for a in self.actors]
        try:
            ray.wait(closing, num_returns=len(closing), timeout=10)
        except Exception:  # noqa: BLE001 - a dead replica has nothing to free
            pass
        self._kill_actors()
        cluster.disconnect()


async def _awaited(ref) -> Any:
    """The value of a Ray ref, or the exception it raised (returned, not raised)."""
    try:
        return await asyncio.wrap_future(ref.future())
    except Exception as exc:  # noqa: BLE001
        return exc

