"""The skeleton an HTTP engine subclasses: requests fanned out `max_concurrency` at a time, and
stop strings that unillm matches read from a stream closed at the first match."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ...engine import Engine, EngineRequest, EngineResult, Knob, ScoreRequest, ScoreResult, TokenEvent
from .client import HTTPClient
from .concurrency import arun_bounded, run_bounded, stream_concurrently
from .stops import acollect, collect

__all__ = ["HTTPEngine"]


class HTTPEngine(Engine):
    """What the HTTP engines share: one request per prompt, `max_concurrency` at a time (threads
    for sync calls, the event loop for async ones); a prompt that fails costs only itself; stop
    strings that unillm matches are read from a stream that is closed at the first match.

    A subclass (its `Options` derived from `HTTPOptions`) sets `capabilities`, makes
    ``self.client = HTTPClient(name, options)`` in `__init__` (`_probe` checks the address at
    load), and implements, for one request:

    - `_complete` / `_acomplete`: the whole answer, as an `EngineResult` with one sample
      (`EngineSequence([], finish_reason, text=..., output_tokens=...)`), the request body it
      sent as `received`, and the server's `prompt_tokens` where it reports them;
    - `stream` / `astream`: `TokenEvent`s with text deltas, the last one carrying
      `finish_reason`; one event carries the request's `result` (`EngineResult` without
      samples), at the latest the last. A stream that ends before the server said why it
      stopped must raise `EngineError` (the text so far is not a result).

    `generate`, `agenerate` and `stream_batch` are built from those here; where the server
    can score text (`capabilities.score`), `_score_one` / `_ascore_one` score one
    `ScoreRequest` and `score` / `ascore` fan them out the same way.
    """

    local = False
    tunables = {"max_concurrency": Knob("int", 1, 64, log=True, help="requests in flight at once")}
    client: HTTPClient

    def _probe(self, path: str) -> Any:
        """GET `path` at load, so a wrong address fails at once (the client is closed then)."""
        try:
            return self.client.get_json(path)
        except Exception:
            self.client.close()
            raise

    def _complete(self, request: EngineRequest) -> EngineResult:
        """One request, not streamed: its result with one sample (see the class docstring)."""
        raise NotImplementedError

    async def _acomplete(self, request: EngineRequest) -> EngineResult:
        """The asyncio counterpart of `_complete`."""
        raise NotImplementedError

    def generate(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        return run_bounded(self._generate_one, list(requests), self.options.max_concurrency)

    def _generate_one(self, request: EngineRequest) -> EngineResult:
        if request.trackers:  # unillm matches the stops: stream, and stop at the first one
            return collect(request, self.stream(request))
        return self._complete(request)

    def stream_batch(self, requests: Sequence[EngineRequest]) -> Iterator[tuple[int, TokenEvent]]:
        """Independent requests: streamed concurrently, `max_concurrency` at a time."""
        return stream_concurrently(self.stream, list(requests), self.options.max_concurrency)

    async def agenerate(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        return await arun_bounded(self._agenerate_one, list(requests), self.options.max_concurrency)

    async def _agenerate_one(self, request: EngineRequest) -> EngineResult:
        if request.trackers:
            return await acollect(request, self.astream(request))
        return await self._acomplete(request)

    def _score_one(self, request: ScoreRequest) -> ScoreResult:
        """One scoring request (an engine with `capabilities.score` implements it)."""
        raise NotImplementedError

    async def _ascore_one(self, request: ScoreRequest) -> ScoreResult:
        """The asyncio counterpart of `_score_one`."""
        raise NotImplementedError

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        return run_bounded(self._score_one, list(requests), self.options.max_concurrency)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        return await arun_bounded(self._ascore_one, list(requests), self.options.max_concurrency)

    def close(self) -> None:
        self.client.close()
