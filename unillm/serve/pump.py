"""Running a `MultiStream` (a blocking iterator) in a worker thread, feeding the event loop.

Its own module because it is the one place where the server crosses threads: the hand-over
protocol (bursts, one wake-up each; stopping the engine when the caller is cancelled) is
easier to check alone than inside the schedulers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from ..generator import MultiStream
from ..results import Chunk, Completion

Item = Chunk | Completion


async def pump(multi: MultiStream, deliver: Callable[[list[tuple[int, Item]]], None]) -> None:
    """Run `multi` in a worker thread, handing its items to `deliver` on the event loop.

    Items are handed over in bursts (one loop wake-up per burst, not per token): a batch of
    64 streams yields 64 items per engine step, and waking the loop for each would cost more
    than the step itself on a small model. If the caller is cancelled, the worker stops the
    engine (closes `multi`) at its next item.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[BaseException | None] = loop.create_future()
    lock = threading.Lock()
    pending: list[tuple[int, Item]] = []
    scheduled = False
    stop = threading.Event()

    def drain() -> None:
        nonlocal scheduled
        with lock:
            items = pending[:]
            pending.clear()
            scheduled = False
        deliver(items)

    def finish(exc: BaseException | None) -> None:
        drain()
        if not done.done():
            done.set_result(exc)

    def work() -> None:
        nonlocal scheduled
        error: BaseException | None = None
        try:
            for item in multi:
                with lock:
                    pending.append(item)
                    wake = not scheduled
                    scheduled = True
                if wake:
                    loop.call_soon_threadsafe(drain)
                if stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - raised in the event loop
            error = exc
        finally:
            multi.close()
        try:
            loop.call_soon_threadsafe(finish, error)
        except RuntimeError:  # the loop is gone
            pass

    threading.Thread(target=work, name="unillm-batch", daemon=True).start()
    try:
        error = await asyncio.shield(done)
    except asyncio.CancelledError:
        stop.set()
        raise
    if error is not None:
        raise error
