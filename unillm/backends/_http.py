"""What every HTTP engine shares: the connection options, retries with backoff, bounded
concurrency, Server-Sent Events parsing, and one rule: a broken stream is an `EngineError`, never
a quiet end.

A server that closes the connection in the middle of a stream, sends nothing for `timeout`
seconds, or ends the stream without saying why it stopped, has not produced a result; treating
the text received so far as the answer would hand the caller a truncated completion as if it
were whole. Only requests that have not started streaming are retried (429, 5xx, refused
connections): a retry after tokens reached the caller would repeat them.

httpx is imported inside the functions that use it, so `import unillm` stays light.
"""

from __future__ import annotations

import asyncio
import json
import queue
import random
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from pydantic import Field, SecretStr

from ..engine import Engine, EngineOptions, EngineRequest, EngineResult, EngineSequence, Knob, TokenEvent
from ..errors import EngineError, PartialBatchFailure, ServerError
from ..timing import now

T = TypeVar("T")
R = TypeVar("R")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses that mean "not now" rather than "never": overloaded, rate-limited, restarting."""

DONE = "[DONE]"


class HTTPOptions(EngineOptions):
    """Options every HTTP engine takes (the server's address, credentials, patience)."""

    base_url: str = Field(description="the server's address, e.g. http://127.0.0.1:8000/v1")
    api_key: SecretStr | None = Field(
        None, description="sent as 'Authorization: Bearer <api_key>' (shown masked in gen.info)"
    )
    headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers")
    timeout: float = Field(
        600.0, gt=0, description="seconds to wait for the response, or for the next piece of "
        "a stream, before failing",
    )
    connect_timeout: float = Field(10.0, gt=0, description="seconds to wait for a connection")
    max_retries: int = Field(
        3, ge=0, description="retries of a request that failed before any output (429, 5xx, "
        "refused connection)",
    )
    backoff: float = Field(
        0.5, ge=0, description="seconds before the first retry; doubled for each further one "
        "(a server's Retry-After wins)",
    )
    max_backoff: float = Field(30.0, ge=0, description="longest wait between two retries")
    max_concurrency: int = Field(
        16, ge=1, description="requests in flight at once (a list of prompts runs this many "
        "at a time)",
    )


def _error_detail(body: bytes | str) -> str:
    """The server's own error message, whatever shape it comes in (OpenAI, TGI, FastAPI)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:500] or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return str(err)[:500]
    return text.strip()[:500]


def stream_error(event: Mapping[str, Any]) -> str | None:
    """An error reported inside a stream (``{"error": ...}``), or None."""
    err = event.get("error")
    if err is None:
        return None
    if isinstance(err, dict):
        return str(err.get("message", err))
    return str(err)


class SSEParser:
    """Server-Sent Events, as the HTML standard defines them, reduced to what LLM servers use:
    ``data:`` lines (joined by newlines), blank lines ending an event, comments (``:``, the
    keep-alive pings) and the other fields ignored."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        """One line (without its line break); returns an event's data when one is complete."""
        if line == "":
            return self.flush()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        return None

    def flush(self) -> str | None:
        if not self._data:
            return None
        data = "\n".join(self._data)
        self._data = []
        return data


def _decode_event(engine: str, data: str) -> dict[str, Any]:
    try:
        event = json.loads(data)
    except ValueError as exc:
        raise EngineError(engine, f"the server sent a stream event that is not JSON: {data[:200]!r}") from exc
    if not isinstance(event, dict):
        raise EngineError(engine, f"the server sent an unexpected stream event: {data[:200]!r}")
    message = stream_error(event)
    if message is not None:
        raise EngineError(engine, f"the server reported an error mid-stream: {message}")
    return event


class HTTPClient:
    """One engine's connections to its server: a sync client shared by threads, one async
    client per event loop (an httpx.AsyncClient cannot move between loops, and `asyncio.run`
    makes a new loop each time)."""

    def __init__(self, engine: str, options: HTTPOptions):
        import httpx

        self.httpx = httpx
        self.engine = engine
        self.options = options
        self.base_url = options.base_url.rstrip("/")
        headers = {"Accept": "application/json", **options.headers}
        if options.api_key is not None:
            headers["Authorization"] = f"Bearer {options.api_key.get_secret_value()}"
        self._headers = headers
        self._timeout = httpx.Timeout(
            options.timeout, connect=options.connect_timeout, pool=None
        )
        self._limits = httpx.Limits(
            max_connections=options.max_concurrency,
            max_keepalive_connections=options.max_concurrency,
        )
        self._client = httpx.Client(headers=headers, timeout=self._timeout, limits=self._limits)
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    # -- plumbing ----------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _aclient(self):
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.get(loop)
            if client is None:
                client = self.httpx.AsyncClient(
                    headers=self._headers, timeout=self._timeout, limits=self._limits
                )
                self._aclients[loop] = client
            return client

    def _delay(self, attempt: int, response: Any = None) -> float:
        """Seconds before retry `attempt` (0-based): the server's Retry-After if it sent one,
        else exponential backoff with a little jitter (so clients do not retry in lockstep)."""
        o = self.options
        if response is not None:
            after = response.headers.get("retry-after")
            if after is not None:
                try:
                    return min(max(float(after), 0.0), o.max_backoff)
                except ValueError:
                    pass
        return min(o.backoff * (2**attempt) * (1 + 0.25 * random.random()), o.max_backoff)

    def _failure(self, exc: Exception, url: str) -> EngineError:
        httpx = self.httpx
        if isinstance(exc, httpx.TimeoutException):
            what = "connect to" if isinstance(exc, httpx.ConnectTimeout) else "hear from"
            limit = (self.options.connect_timeout if isinstance(exc, httpx.ConnectTimeout)
                     else self.options.timeout)
            return EngineError(self.engine, f"could not {what} {url} within {limit:g} s "
                                            f"({type(exc).__name__})")
        if isinstance(exc, httpx.ConnectError):
            return EngineError(self.engine, f"cannot connect to {url}: {exc} (is the server "
                                            "running, and is base_url right?)")
        return EngineError(self.engine, f"request to {url} failed: {type(exc).__name__}: {exc}")

    def _retryable(self, exc: Exception) -> bool:
        httpx = self.httpx
        # Failures before the server sent any response: nothing was generated for the caller.
        return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout,
                                httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError))

    def _wait(self, attempt: int, exc: Exception | None = None, response: Any = None) -> float | None:
        """Seconds to wait before retrying a failed attempt, or None when it is final."""
        if attempt >= self.options.max_retries:
            return None
        if exc is not None:
            return self._delay(attempt) if self._retryable(exc) else None
        if response.status_code in RETRY_STATUSES:
            return self._delay(attempt, response)
        return None

    def _json(self, response: Any, url: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise EngineError(self.engine, f"{url} answered with a body that is not JSON: "
                                           f"{response.text[:200]!r}") from exc

    def _broken_stream(self, exc: Exception, url: str) -> EngineError:
        if isinstance(exc, self.httpx.TimeoutException):
            return EngineError(self.engine, f"the stream from {url} sent nothing for "
                                            f"{self.options.timeout:g} s (timeout)")
        return EngineError(self.engine, f"the server closed the stream from {url} before it "
                                        f"finished ({type(exc).__name__}: {exc})")

    # -- sync --------------------------------------------------------------------------------
    def get_json(self, path: str) -> Any:
        url = self.url(path)
        return self._json(self._send(lambda: self._client.get(url), url), url)

    def post_json(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.post_json_with_headers(path, body)[0]

    def post_json_with_headers(self, path: str, body: Mapping[str, Any]) -> tuple[Any, Any]:
        url = self.url(path)
        response = self._send(lambda: self._client.post(url, json=body), url)
        return self._json(response, url), response.headers

    def _send(self, send: Callable[[], Any], url: str) -> Any:
        """`send()` until it succeeds, retrying what `_wait` allows; the response, or the
        error of the last attempt."""
        attempt = 0
        while True:
            try:
                response = send()
            except self.httpx.HTTPError as exc:
                wait = self._wait(attempt, exc=exc)
                if wait is None:
                    raise self._failure(exc, url) from exc
            else:
                if response.status_code < 400:
                    return response
                content = response.read()
                response.close()
                wait = self._wait(attempt, response=response)
                if wait is None:
                    raise ServerError(self.engine, response.status_code, url, _error_detail(content))
            time.sleep(wait)
            attempt += 1

    def stream_events(self, path: str, body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """POST `body` and yield each SSE event's JSON, up to ``[DONE]`` or the end of the
        stream. Closing the iterator closes the connection, which tells the server to stop."""
        url = self.url(path)

        def send():
            request = self._client.build_request("POST", url, json=body,
                                                 headers={"Accept": "text/event-stream"})
            return self._client.send(request, stream=True)

        response = self._send(send, url)
        try:
            parser = SSEParser()
            try:
                for line in response.iter_lines():
                    data = parser.feed(line)
                    if data is None:
                        continue
                    if data.strip() == DONE:
                        return
                    yield _decode_event(self.engine, data)
                data = parser.flush()
            except self.httpx.HTTPError as exc:
                raise self._broken_stream(exc, url) from exc
            if data is not None and data.strip() != DONE:
                yield _decode_event(self.engine, data)
        finally:
            response.close()

    # -- async -------------------------------------------------------------------------------
    async def apost_json(self, path: str, body: Mapping[str, Any]) -> Any:
        return (await self.apost_json_with_headers(path, body))[0]

    async def apost_json_with_headers(self, path: str, body: Mapping[str, Any]) -> tuple[Any, Any]:
        url = self.url(path)
        client = self._aclient()
        response = await self._asend(lambda: client.post(url, json=body), url)
        return self._json(response, url), response.headers

    async def _asend(self, send: Callable[[], Any], url: str) -> Any:
        """The asyncio counterpart of `_send`."""
        attempt = 0
        while True:
            try:
                response = await send()
            except self.httpx.HTTPError as exc:
                wait = self._wait(attempt, exc=exc)
                if wait is None:
                    raise self._failure(exc, url) from exc
            else:
                if response.status_code < 400:
                    return response
                content = await response.aread()
                await response.aclose()
                wait = self._wait(attempt, response=response)
                if wait is None:
                    raise ServerError(self.engine, response.status_code, url, _error_detail(content))
            await asyncio.sleep(wait)
            attempt += 1

    async def astream_events(self, path: str, body: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        url = self.url(path)
        client = self._aclient()

        def send():
            request = client.build_request("POST", url, json=body,
                                           headers={"Accept": "text/event-stream"})
            return client.send(request, stream=True)

        response = await self._asend(send, url)
        try:
            parser = SSEParser()
            try:
                async for line in response.aiter_lines():
                    data = parser.feed(line)
                    if data is None:
                        continue
                    if data.strip() == DONE:
                        return
                    yield _decode_event(self.engine, data)
                data = parser.flush()
            except self.httpx.HTTPError as exc:
                raise self._broken_stream(exc, url) from exc
            if data is not None and data.strip() != DONE:
                yield _decode_event(self.engine, data)
        finally:
            await response.aclose()

    def close(self) -> None:
        self._client.close()
        with self._lock:
            clients = list(self._aclients.items())
            self._aclients.clear()
        for loop, client in clients:
            # An async client can only be closed on its own loop; a loop that is gone took its
            # connections with it.
            if loop.is_running() and not loop.is_closed():
                asyncio.run_coroutine_threadsafe(client.aclose(), loop)


# -- batch results from a stream ---------------------------------------------------------------
class StopCollector:
    """A batch result built from a text stream that unillm ends at its own stop strings.

    HTTP engines whose server cannot say which stop string matched let unillm match them
    (`Capabilities.stop_hook`): a batch request is then streamed, each text delta goes to
    `request.should_stop`, and the stream is closed at the first match. The text kept is
    everything received; unillm's `finalize` cuts it at the stop and names it.
    """

    def __init__(self, request: EngineRequest):
        self.request = request
        self.parts: list[str] = []
        self.times: list[float] = []
        self.final: TokenEvent | None = None
        self.reported = EngineResult()

    def take(self, event: TokenEvent) -> bool:
        """Record one TokenEvent; True when the stream can be closed."""
        if event.result is not None:
            self.reported = event.result
        self.times.extend([now()] * event.token_count)
        if event.text:
            self.parts.append(event.text)
            if self.request.should_stop(0, text=event.text):
                return True
        if event.finish_reason is not None:
            self.final = event
            return True
        return False

    def result(self) -> EngineResult:
        text = "".join(self.parts)
        final = self.final
        if final is None:  # unillm's stop fired: the tokens received so far
            seq = EngineSequence([], "length", text=text, token_times=self.times,
                                 output_tokens=len(self.times))
        else:
            seq = EngineSequence([], final.finish_reason or "length", final.stop_reason,
                                 text=text, token_times=self.times,
                                 output_tokens=final.output_tokens)
        return replace(self.reported, samples=[seq])


def collect(request: EngineRequest, events: Iterator[TokenEvent]) -> EngineResult:
    collector = StopCollector(request)
    try:
        for event in events:
            if collector.take(event):
                break
    finally:
        events.close()  # type: ignore[attr-defined]
    return collector.result()


async def acollect(request: EngineRequest, events: AsyncIterator[TokenEvent]) -> EngineResult:
    collector = StopCollector(request)
    try:
        async for event in events:
            if collector.take(event):
                break
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    return collector.result()


# -- bounded concurrency ----------------------------------------------------------------------
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


# -- the engine skeleton ---------------------------------------------------------------------
class HTTPEngine(Engine):
    """What the HTTP engines share: one request per prompt, `max_concurrency` at a time (threads
    for sync calls, the event loop for async ones); a prompt that fails costs only itself; stop
    strings that unillm matches are read from a stream that is closed at the first match.

    A subclass makes `self.client` and implements `_complete` / `_acomplete` (one request,
    whole answer) and `stream` / `astream`.
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
        raise NotImplementedError

    async def _acomplete(self, request: EngineRequest) -> EngineResult:
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

    def close(self) -> None:
        self.client.close()
