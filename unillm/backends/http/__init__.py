"""The public base of HTTP engines: what a plugin for another server subclasses and calls.

- `HTTPEngine` (engine.py): the skeleton. A subclass implements `_complete` / `_acomplete`
  (one request, whole answer, returned as an `EngineResult`) and `stream` / `astream`
  (`TokenEvent`s, one of them carrying the request's `result`); batches, concurrency and stop
  strings matched by unillm come from the base.
- `HTTPOptions`, `HTTPClient` (client.py): the server's address, credentials and patience; JSON
  requests and SSE streams with retries (429, 5xx, refused connections) before any output, and
  a broken stream raised as `EngineError`, never ended quietly.
- `SSEParser`, `SSEDecoder`, `parse_events` / `aparse_events`, `iter_events` / `aiter_events`
  (sse.py): Server-Sent Events, parsed once and read from sync or async line iterators.
- `run_bounded`, `arun_bounded`, `stream_concurrently` (concurrency.py): independent requests,
  `limit` at a time, a failure costing only its own request.
- `StopCollector`, `collect`, `acollect` (stops.py): a batch result read from a stream that
  unillm closes at its own stop strings.

`unillm/backends/openai.py` and `tgi.py` are worked examples; docs/engines/http.md describes
the behaviour they share. httpx is imported only when a client is made.
"""

from .client import RETRY_STATUSES, HTTPClient, HTTPOptions
from .concurrency import arun_bounded, run_bounded, stream_concurrently
from .engine import HTTPEngine
from .sse import (
    DONE, SSEDecoder, SSEParser, aiter_events, aparse_events, decode_event, iter_events,
    json_decoder, parse_events, stream_error,
)
from .stops import StopCollector, acollect, collect

__all__ = [
    "DONE", "RETRY_STATUSES", "HTTPClient", "HTTPEngine", "HTTPOptions", "SSEDecoder",
    "SSEParser", "StopCollector", "acollect", "aiter_events", "aparse_events", "arun_bounded",
    "collect", "decode_event", "iter_events", "json_decoder", "parse_events", "run_bounded",
    "stream_concurrently", "stream_error",
]
