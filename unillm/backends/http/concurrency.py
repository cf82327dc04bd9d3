"""Bounded concurrency for independent requests: at most `limit` in flight, results in input
order, and a failing request costs only itself (`PartialBatchFailure` keeps the others).

Threads for sync calls, the event loop for async ones: an HTTP request spends its time waiting
on the server, so threads are cheap here.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ...engine import EngineRequest, TokenEvent
from ...errors import PartialBatchFailure

__all__ = ["arun_bounded", "run_bounded", "stream_concurrently"]

T = TypeVar("T")
R = TypeVar("R")


def _outcome(results: list[Any], errors: dict[int, BaseException]) -> list[Any]:
    """Every result, or the failure: the error itself when every request failed, else
    `PartialBatchFailure`, so the requests that completed are not thrown away."""
    if errors and len(errors) == len(results):
        raise errors[min(errors)]
    if errors:
        raise PartialBatchFailure(results, errors)
    return results


def run_bounded(work: Callable[[T], R], items: Sequence[T], limit: int) -> list[R]:
    """`work` over `items`, at most `limit` at a time, results in input order; a failing item
    costs only itself (see `_outcome`)."""
    results: list[Any] = [None] * len(items)
    errors: dict[int, BaseException] = {}

    def one(i: int) -> None:
        try:
            results[i] = work(items[i])
        except Exception as exc:  # noqa: BLE001 - reported per request
            errors[i] = exc

    if len(items) <= 1 or limit <= 1:
        for i in range(len(items)):
            one(i)
    else:
        with ThreadPoolExecutor(max_workers=min(limit, len(items)),
                                thread_name_prefix="unillm-http") as pool:
            list(pool.map(one, range(len(items))))
    return _outcome(results, errors)


async def arun_bounded(work: Callable[[T], Any], items: Sequence[T], limit: int) -> list[Any]:
    """The asyncio counterpart of `run_bounded`."""
    semaphore = asyncio.Semaphore(limit)
    results: list[Any] = [None] * len(items)
    errors: dict[int, BaseException] = {}

    async def one(i: int) -> None:
        async with semaphore:
            try:
                results[i] = await work(items[i])
            except Exception as exc:  # noqa: BLE001 - reported per request
                errors[i] = exc

    await asyncio.gather(*(one(i) for i in range(len(items))))
    return _outcome(results, errors)


def stream_concurrently(
    stream: Callable[[EngineRequest], Iterator[TokenEvent]],
    requests: Sequence[EngineRequest], limit: int,
) -> Iterator[tuple[int, TokenEvent]]:
    """`Engine.stream_batch` for requests that are independent streams (HTTP): up to `limit`
    at once, each read by a worker thread; ``(index, event)`` pairs come out as they arrive. A
    request whose `aborted` turns true is no longer read (its connection is closed); closing
    this iterator stops them all; the first failure ends the batch."""
    out: queue.Queue[tuple[int, TokenEvent | None, BaseException | None]] = queue.Queue()
    stop = threading.Event()

    def read(index: int) -> None:
        request = requests[index]
        try:
            if stop.is_set() or request.aborted:
                return
            events = stream(request)
            try:
                for event in events:
                    out.put((index, event, None))
                    if stop.is_set() or request.aborted:
                        break
            finally:
                events.close()  # type: ignore[attr-defined]
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            out.put((index, None, exc))
            return
        finally:
            out.put((index, None, None))

    pool = ThreadPoolExecutor(max_workers=max(1, min(limit, len(requests))),
                              thread_name_prefix="unillm-http-stream")
    for index in range(len(requests)):
        pool.submit(read, index)
    remaining = len(requests)
    try:
        while remaining:
            index, event, exc = out.get()
            if exc is not None:
                raise exc
            if event is None:
                remaining -= 1
                continue
            yield index, event
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
