"""Bridges a synchronous token iterator into asyncio without blocking the event loop.

Engines without an async API (transformers, CTranslate2, llama.cpp) stream through this: the
sync iterator runs in a worker thread and hands each item to the loop. When the consumer stops
early (a client disconnects), the iterator is closed in its own thread, which is what tells
the engine to stop generating.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def iterate_in_thread(factory: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    async def bridge() -> AsyncIterator[T]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[object, BaseException | None]] = asyncio.Queue()
        cancelled = threading.Event()

        def hand_over(item: object, exc: BaseException | None = None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (item, exc))
            except RuntimeError:  # the loop is gone: nobody is listening any more
                cancelled.set()

        def work() -> None:
            iterator = None
            try:
                iterator = factory()
                for item in iterator:
                    if cancelled.is_set():
                        break
                    hand_over(item)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                hand_over(_DONE, exc)
                return
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
            hand_over(_DONE)

        threading.Thread(target=work, name="unillm-stream", daemon=True).start()
        try:
            while True:
                item, exc = await queue.get()
                if item is _DONE:
                    if exc is not None:
                        raise exc
                    return
                yield item  # type: ignore[misc]
        finally:
            cancelled.set()

    return bridge()
