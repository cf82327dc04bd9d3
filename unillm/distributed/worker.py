"""The replica: a Ray actor that holds one real engine, loaded by name through the registry.

It runs engine calls exactly as a local `Generator` would hand them over (the planning,
decoding and timing stay in the driver's `Generator`); it only adds what crossing a process
boundary needs: rebuilding stop trackers, moving token times onto offsets (wire.py), and
streams served by long polling, which works over Ray Client (``ray://``) too, where Ray's
streaming generators do not.

This module imports no Ray: `ray.remote(ReplicaWorker)` is applied by the driver.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from ..decoding import decoder
from ..engine import Engine, TokenEvent
from ..planning import batch_groups
from ..timing import now
from .wire import Description, Reply, StreamBatch, WireRequest, portable_error, to_offsets

_END = object()


class _Stream:
    """One open stream of one or more requests: a thread runs the engine's stream into a
    queue; the driver's polls drain it."""

    def __init__(self, worker: ReplicaWorker, wires: list[WireRequest]):
        self.requests = [w.to_request(worker.decoder) for w in wires]
        self.queue: queue.Queue[Any] = queue.Queue()
        self.cancelled = threading.Event()
        self.aborted: set[int] = set()
        self.error: BaseException | None = None
        self.done = False
        self.thread = threading.Thread(target=self._run, args=(worker,), daemon=True,
                                       name="unillm-replica-stream")
        self.thread.start()

    def _events(self, engine: Engine) -> Iterator[tuple[int, TokenEvent]]:
        """``(index, event)`` for these requests, grouped as the engine takes a batch: each
        group through the engine's own batched stream when it has one
        (`Engine.stream_batch`), else through its `stream`, request after request."""
        batched = getattr(engine, "stream_batch", None)
        for group in batch_groups(self.requests, engine.capabilities):
            live = [i for i in group if i not in self.aborted]
            if batched is not None and len(live) > 1:
                events = batched([self.requests[i] for i in live])
                try:
                    for local, event in events:
                        yield live[local], event
                finally:
                    close = getattr(events, "close", None)
                    if close is not None:
                        close()  # stops the engine's batch if we were stopped
            else:
                yield from self._one_by_one(engine, live)

    def _one_by_one(self, engine: Engine, indices: list[int]) -> Iterator[tuple[int, TokenEvent]]:
        for index in indices:
            request = self.requests[index]
            if index in self.aborted:
                continue
            events = engine.stream(request)
            try:
                for event in events:
                    yield index, event
                    if index in self.aborted:
                        break
            finally:
                close = getattr(events, "close", None)
                if close is not None:
                    close()

    def _run(self, worker: ReplicaWorker) -> None:
        try:
            with worker.engine_lock():
                events = self._events(worker._engine())
                try:
                    for item in events:
                        self.queue.put(item)
                        if self.cancelled.is_set():
                            break
                finally:
                    events.close()  # tells the engine to stop generating
        except BaseException as exc:  # noqa: BLE001 - handed to the driver
            self.error = portable_error(exc)
        finally:
            self.queue.put(_END)

    def abort(self, index: int) -> None:
        """Stop one request; the others go on."""
        self.aborted.add(index)
        self.requests[index].abort()

    def take(self) -> StreamBatch:
        """Block for at least one event (or the end), then take everything else ready."""
        events: list[tuple[int, TokenEvent]] = []
        item = self.queue.get()
        while True:
            if item is _END:
                self.done = True
                break
            events.append(item)
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
        return StreamBatch(events, self.done, self.error if self.done else None)


class ReplicaWorker:
    """The body of one replica actor."""

    def __init__(self, engine: str, model: str, options: dict[str, Any]):
        # A load failure is kept and raised by every call, so the driver receives the real
        # exception (e.g. UnknownParameterError) rather than Ray's "actor died" text.
        self.engine: Engine | None = None
        self.load_error: BaseException | None = None
        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}
        self._streams_lock = threading.Lock()
        try:
            from ..building import build_engine

            self.engine, _ = build_engine(engine, model, **options)
        except BaseException as exc:  # noqa: BLE001
            self.load_error = portable_error(exc)

    # -- helpers ---------------------------------------------------------------------------
    def _engine(self) -> Engine:
        if self.engine is None:
            raise self.load_error or RuntimeError("the replica has no engine")
        return self.engine

    def decoder(self, params):
        """The decode for one request's samples (`decoding.decoder`); None for text engines."""
        tok = self._engine().tokenizer
        if tok is None or not self._engine().capabilities.token_ids:
            return None
        return decoder(tok, params)

    def engine_lock(self):
        """Serialise engine calls unless the engine declares them concurrent, as the
        `Generator` does in one process."""
        if self._engine().capabilities.concurrent:
            return contextlib.nullcontext()
        return self._lock

    # -- calls from the driver -------------------------------------------------------------
    def ping(self) -> int:
        self._engine()
        return os.getpid()

    def describe(self) -> Description:
        engine = self._engine()
        tok = engine.tokenizer
        return Description(
            engine=engine.name, capabilities=engine.capabilities,
            context_length=engine.context_length, options=engine.options,
            tokenizer=_portable_tokenizer(tok), has_tokenizer=tok is not None,
            local=engine.local, node=socket.gethostname(), pid=os.getpid(),
        )

    def info(self) -> dict[str, Any]:
        return self._engine().info()

    def generate(self, wires: list[WireRequest]) -> Reply:
        """Run this replica's share of a batch, one engine call per group of parameters the
        engine takes together (the driver sends mixed parameters: it balances whole calls)."""
        start = now()
        engine = self._engine()
        requests = [w.to_request(self.decoder) for w in wires]
        samples: list[Any] = [None] * len(requests)
        with self.engine_lock():
            for group in batch_groups(requests, engine.capabilities):
                results = engine.generate([requests[i] for i in group])
                if len(results) != len(group):
                    raise RuntimeError(f"the engine returned {len(results)} results for "
                                       f"{len(group)} requests")
                for i, result in zip(group, results):
                    samples[i] = result
        end = now()
        return Reply([to_offsets(r, end) for r in samples], end - start)

    def open_stream(self, stream_id: str, wires: list[WireRequest]) -> StreamBatch:
        """Start streaming these requests; returns the first events (saves a round trip)."""
        stream = _Stream(self, wires)
        with self._streams_lock:
            self._streams[stream_id] = stream
        return self.poll_stream(stream_id)

    def poll_stream(self, stream_id: str) -> StreamBatch:
        with self._streams_lock:
            stream = self._streams.get(stream_id)
        if stream is None:
            return StreamBatch([], done=True, error=RuntimeError(f"no open stream {stream_id}"))
        batch = stream.take()
        if batch.done:
            with self._streams_lock:
                self._streams.pop(stream_id, None)
        return batch

    def abort_stream(self, stream_id: str, index: int) -> None:
        with self._streams_lock:
            stream = self._streams.get(stream_id)
        if stream is not None:
            stream.abort(index)

    def cancel_stream(self, stream_id: str) -> None:
        with self._streams_lock:
            stream = self._streams.pop(stream_id, None)
        if stream is not None:
            stream.cancelled.set()

    def cpu_seconds(self) -> float:
        """CPU time this replica's process has used (all threads): lets a benchmark tell the
        work done from the share of a busy machine it got."""
        return time.process_time()

    def open_streams(self) -> int:
        with self._streams_lock:
            return len(self._streams)

    # -- tokenizer fallback: used when the engine's tokenizer cannot travel -----------------
    def tokenizer_call(self, method: str, *args: Any) -> Any:
        return getattr(self._engine().tokenizer, method)(*args)

    def tokenizer_eos(self) -> frozenset[int]:
        return self._engine().tokenizer.eos_token_ids  # type: ignore[union-attr]

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


def _portable_tokenizer(tok: Any) -> bytes | None:
    """The pickled tokenizer if it is unillm's Hugging Face adapter, else None.

    An HF tokenizer unpickles in the driver with only `transformers`/`tokenizers` (no torch,
    no weights, ~50 kB here); an arbitrary engine's tokenizer might drag its whole engine along
    (llama.cpp's pickles its model), so any other is used remotely instead.
    """
    from ..tokenizer import HFTokenizer

    if not isinstance(tok, HFTokenizer):
        return None
    try:
        return pickle.dumps(tok)
    except Exception:  # noqa: BLE001
        return None
