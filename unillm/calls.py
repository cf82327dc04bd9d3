"""Every call from the core into an engine, in one place.

It serialises engines that are not thread-safe (`Capabilities.concurrent`), turns whatever an
engine raises into unillm's own error (`errors.as_engine_error`), closes an engine's stream
however its consumer ends, and knows which optional methods an engine implements natively.
Sync and async paths differ only in how they wait.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from .decoding import decoder
from .engine import Engine, EngineRequest, ScoreRequest, ScoreResult, TokenEvent
from .errors import PartialBatchFailure, UnillmError, as_engine_error
from .params import SamplingParams

T = TypeVar("T")


class EngineCalls:
    """The guarded door to one engine."""

    def __init__(self, engine: Engine, engine_name: str):
        self.engine = engine
        self.engine_name = engine_name
        self.lock = threading.RLock()

    @property
    def decode(self) -> Callable[[Sequence[int]], str] | None:
        """The tokenizer's decode for engines that return token ids; None for text engines."""
        tok = self.engine.tokenizer
        return tok.decode if (tok is not None and self.engine.capabilities.token_ids) else None

    def decoder(self, params: SamplingParams) -> Callable[[Sequence[int]], str] | None:
        """The decode for one request's samples (`decoding.decoder`); None for text engines."""
        tok = self.engine.tokenizer
        if tok is None or not self.engine.capabilities.token_ids:
            return None
        return decoder(tok, params)

    def native(self, method: str) -> bool:
        """Whether the engine overrides the base class's fallback for `method`."""
        return getattr(type(self.engine), method) is not getattr(Engine, method)

    @contextmanager
    def call(self):
        """Serialise engines that are not thread-safe; an engine's failure becomes unillm's
        error (the caller's process keeps running)."""
        lock = None if self.engine.capabilities.concurrent else self.lock
        if lock is not None:
            lock.acquire()
        try:
            yield
        except PartialBatchFailure:
            raise  # the caller keeps what completed
        except UnillmError:
            raise
        except Exception as exc:
            raise self.wrap(exc) from exc
        finally:
            if lock is not None:
                lock.release()

    def wrap(self, exc: BaseException) -> BaseException:
        return as_engine_error(self.engine_name, exc)

    def events(self, start: Callable[[], Iterator[T]]) -> Iterator[T]:
        """An engine stream under `call`, closed (the engine stopped) however it ends."""
        with self.call():
            events = start()
            try:
                yield from events
            finally:
                close = getattr(events, "close", None)
                if close is not None:
                    close()

    async def aevents(self, request: EngineRequest) -> AsyncIterator[TokenEvent]:
        """One request's stream for asyncio: the engine's own `astream` where it has one,
        else its sync `stream`, under `call`, in a worker thread."""
        if self.native("astream"):
            events = self.engine.astream(request)
        else:
            from ._threads import iterate_in_thread

            events = iterate_in_thread(lambda: self.events(lambda: self.engine.stream(request)))
        try:
            try:
                async for event in events:
                    yield event
            except UnillmError:
                raise
            except Exception as exc:
                raise self.wrap(exc) from exc
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def agenerate(self, batch: list[EngineRequest]):
        """One batch for asyncio: awaited when the engine has an async API, else run in a
        worker thread under `call`."""
        if self.native("agenerate"):
            try:
                return await self.engine.agenerate(batch)
            except (PartialBatchFailure, UnillmError):
                raise
            except Exception as exc:
                raise self.wrap(exc) from exc

        def run():
            with self.call():
                return self.engine.generate(batch)

        return await asyncio.to_thread(run)

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        """One scoring batch (`Engine.score`) under `call`."""
        if not requests:
            return []
        with self.call():
            return self.engine.score(requests)

    async def ascore(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        """One scoring batch for asyncio: awaited when the engine has an async `ascore`, else
        its `score` in a worker thread under `call`."""
        if not requests:
            return []
        if self.native("ascore"):
            try:
                return await self.engine.ascore(requests)
            except UnillmError:
                raise
            except Exception as exc:
                raise self.wrap(exc) from exc
        return await asyncio.to_thread(self.score, requests)
