"""Streaming one `generate_batch` call: its per-token callback turned into events per row.

CTranslate2 calls the callback once per row and decoding step, from its worker thread, with the
GIL taken for each call. Handing every token to the consumer on its own would wake the consumer
thread once per token and row, and the two threads would trade the GIL 64 times per step of a
64-row batch. Instead the events of one decoding step are collected and handed over together
when the step's last row has reported (the consumer then works while the next step computes).

Which rows report in a step: CTranslate2 feeds the part of each prompt beyond the shortest one
through the decoding loop, so a row reports its first token at step ``len(prompt) -
shortest prompt`` and then one token per step until it ends (end token, `max_length`, or the
callback returning True). If a step holds fewer reports than expected (CTranslate2's own
`max_batch_size` sub-batches, which decode one after another), its events are handed over at
the start of the next step instead: later, never lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..._threads import pump
from ...engine import EngineRequest, EngineResult, TokenEvent

Emit = Callable[[list[tuple[int, TokenEvent]]], None]


class RowStream:
    """The callback of one streamed `generate_batch` call and the state it keeps per row.

    A row stops (the callback returns True) once its request is aborted (its client left or an
    emulated stop fired: see `EngineRequest.abort`) or the whole stream is cancelled.
    """

    def __init__(self, requests: Sequence[EngineRequest], samples: Sequence[int],
                 positions: Sequence[int], prompt_lengths: Sequence[int], prefix: int,
                 end: set[int], stop_token_ids: Sequence[int], max_tokens: int,
                 emit: Emit, cancelled: threading.Event):
        self.requests = requests
        self.samples = samples
        self.positions = positions  # each row's request index in the caller's list
        shortest = min(prompt_lengths) if prompt_lengths else 0
        self.first_step = [prefix + length - shortest for length in prompt_lengths]
        self.prefix = prefix  # forced prompt steps CTranslate2 reports before the output
        self.end = end
        self.stop_ids = frozenset(stop_token_ids)
        self.max_tokens = max_tokens
        self.emit = emit
        self.cancelled = cancelled
        self.counts = [0] * len(requests)
        self.live = [True] * len(requests)
        self.finished = [False] * len(requests)  # ended by an end token or the length limit
        self.step = -1
        self.expected = 0
        self.buffer: list[tuple[int, TokenEvent]] = []
        self.lock = threading.Lock()  # CTranslate2 sub-batches may report from several threads

    def _new_step(self, step: int) -> None:
        self.flush_locked()
        self.step = step
        self.expected = sum(1 for b, first in enumerate(self.first_step)
                            if self.live[b] and first <= step)

    def flush_locked(self) -> None:
        if self.buffer:
            items, self.buffer = self.buffer, []
            self.emit(items)

    def flush(self) -> None:
        with self.lock:
            self.flush_locked()

    def __call__(self, result: Any) -> bool:
        step = result.step
        if step < self.prefix:  # the forced prompt tokens of a penalised call
            return False
        b = result.batch_id
        token = result.token_id
        with self.lock:
            if step != self.step:
                self._new_step(step)
            self.counts[b] += 1
            stop = self.cancelled.is_set() or self.requests[b].aborted
            finish = reason = None
            if token in self.end:
                finish, reason = "stop", (token if token in self.stop_ids else None)
            elif self.counts[b] >= self.max_tokens:
                finish = "length"
            if finish is not None:
                self.finished[b] = True
            if finish is not None or stop or result.is_last:
                self.live[b] = False
            if not stop:
                self.buffer.append((self.positions[b], TokenEvent(
                    self.samples[b], (token,), finish_reason=finish, stop_reason=reason)))
            self.expected -= 1
            if self.expected <= 0:
                self.flush_locked()
        return stop

    def unfinished(self) -> list[int]:
        """Rows that ended without an end token or reaching `max_tokens` and were not stopped
        by their caller (CTranslate2 ended them on its own): they end as ``length``."""
        return [b for b in range(len(self.requests))
                if not self.finished[b] and not self.requests[b].aborted]


def stream_calls(engine: Any,
                 requests: Sequence[EngineRequest]) -> Iterator[tuple[int, TokenEvent]]:
    """The batch's `generate_batch` calls (as `generate` splits them) in a worker thread, each
    with a `RowStream` callback; ``(request index, event)`` pairs as steps complete, each
    request's first event reporting what its call got."""
    if not requests or all(r.aborted for r in requests):
        return
    p = requests[0].params
    calls, options = engine._plan(requests)
    end = engine._end_ids(p)
    position = {id(r): i for i, r in enumerate(requests)}
    def run(generator, rows: Any, put, cancelled) -> None:
        kwargs, record = engine._call_kwargs(rows, options, p)
        put([(position[id(r)], TokenEvent(result=EngineResult(received=record)))
             for r in dict.fromkeys(rows.requests)])  # what runs, once per request
        callback = RowStream(rows.requests, rows.samples,
                             [position[id(r)] for r in rows.requests],
                             [len(t) for t in rows.tokens], rows.prefix, end,
                             p.stop_token_ids, p.max_tokens, put, cancelled)
        generator.generate_batch(rows.tokens, callback=callback, **kwargs)
        callback.flush()
        silent = callback.unfinished()
        if silent and not cancelled.is_set():
            put([(callback.positions[b], TokenEvent(rows.samples[b], (), finish_reason="length"))
                 for b in silent])

    def work(put, cancelled) -> None:
        with engine._generator_for(p) as generator:
            for rows in calls:
                if cancelled.is_set():
                    break
                if not all(r.aborted for r in rows.requests):
                    run(generator, rows, put, cancelled)

    steps = pump(work, name="unillm-ctranslate2")
    try:  # closing cancels: the next step's callback stops every row
        for items in steps:
            yield from items
    finally:
        steps.close()
