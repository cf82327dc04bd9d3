"""The two ways a stream crosses threads, written once.

- `pump`: a producer that must run in a worker thread (a library call that reports tokens
  through a callback: transformers' streamer, CTranslate2's callback) hands items to a
  synchronous consumer; the consumer's close cancels the producer and waits for it.
- `iterate_in_thread`: a synchronous token iterator bridged into asyncio without blocking the
  event loop (engines without an async API). When the consumer stops early (a client
  disconnects), the iterator is closed in its own thread, which tells the engine to stop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def pump(produce: Callable[[Callable[[T], None], threading.Event], None], *,
         name: str = "unillm-pump") -> Iterator[T]:
    """Run ``produce(put, cancelled)`` in a worker thread and yield what it `put`s, in order.

    The producer's exception is raised here, after the items it put before failing. Closing
    this iterator (or its consumer ending) sets `cancelled`, which the producer checks to stop
    early, and waits for the thread, so no library call outlives its stream.
    """
    import queue

    items: queue.SimpleQueue = queue.SimpleQueue()
    cancelled = threading.Event()

    def work() -> None:
        try:
            produce(items.put, cancelled)
        except BaseException as exc:  # noqa: BLE001 - raised in the consumer
            items.put(_Failed(exc))
        finally:
            items.put(_DONE)

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        cancelled.set()
        worker.join()


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
