"""The connection to one server: options, retries with backoff, and one rule: a broken stream is
an `EngineError`, never a quiet end.

A server that closes the connection in the middle of a stream, sends nothing for `timeout`
seconds, or ends the stream without saying why it stopped, has not produced a result; treating
the text received so far as the answer would hand the caller a truncated completion as if it
were whole. Only requests that have not started streaming are retried (429, 5xx, refused
connections): a retry after tokens reached the caller would repeat them.

httpx is imported when a client is made, so `import unillm` stays light.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from pydantic import Field, SecretStr

from ...engine import EngineOptions
from ...errors import EngineError, ServerError
from .sse import aiter_events, iter_events, json_decoder

__all__ = ["RETRY_STATUSES", "HTTPClient", "HTTPOptions"]

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses that mean "not now" rather than "never": overloaded, rate-limited, restarting."""


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
        """The absolute URL of `path` under the server's `base_url`."""
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
        """GET `path` (retried as `_send` allows) and return its JSON body."""
        url = self.url(path)
        return self._json(self._send(lambda: self._client.get(url), url), url)

    def post_json(self, path: str, body: Mapping[str, Any]) -> Any:
        """POST `body` as JSON to `path` (retried before any output) and return the JSON
        answer; a status >= 400 that is final raises `ServerError` with the server's message."""
        return self.post_json_with_headers(path, body)[0]

    def post_json_with_headers(self, path: str, body: Mapping[str, Any]) -> tuple[Any, Any]:
        """`post_json`, and the response's headers (TGI counts the prompt in one)."""
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

    def _stream_request(self, client: Any, url: str, body: Mapping[str, Any]) -> Callable[[], Any]:
        """The send of a streamed POST on `client` (sync or async: its `send` says which)."""
        def send():
            request = client.build_request("POST", url, json=body,
                                           headers={"Accept": "text/event-stream"})
            return client.send(request, stream=True)

        return send

    def stream_events(self, path: str, body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """POST `body` and yield each SSE event's JSON, up to ``[DONE]`` or the end of the
        stream. Closing the iterator closes the connection, which tells the server to stop."""
        url = self.url(path)
        response = self._send(self._stream_request(self._client, url, body), url)
        try:
            try:
                yield from iter_events(json_decoder(self.engine), response.iter_lines())
            except self.httpx.HTTPError as exc:
                raise self._broken_stream(exc, url) from exc
        finally:
            response.close()

    # -- async -------------------------------------------------------------------------------
    async def apost_json(self, path: str, body: Mapping[str, Any]) -> Any:
        """The asyncio counterpart of `post_json`."""
        return (await self.apost_json_with_headers(path, body))[0]

    async def apost_json_with_headers(self, path: str, body: Mapping[str, Any]) -> tuple[Any, Any]:
        """The asyncio counterpart of `post_json_with_headers`."""
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
        """The asyncio counterpart of `stream_events`."""
        url = self.url(path)
        response = await self._asend(self._stream_request(self._aclient(), url, body), url)
        events = aiter_events(json_decoder(self.engine), response.aiter_lines())
        try:
            try:
                async for event in events:
                    yield event
            except self.httpx.HTTPError as exc:
                raise self._broken_stream(exc, url) from exc
        finally:
            await events.aclose()  # no `yield from` in async: close the inner loop ourselves
            await response.aclose()

    def close(self) -> None:
        """Close the connections, sync and async."""
        self._client.close()
        with self._lock:
            clients = list(self._aclients.items())
            self._aclients.clear()
        for loop, client in clients:
            # An async client can only be closed on its own loop; a loop that is gone took its
            # connections with it.
            if loop.is_running() and not loop.is_closed():
                asyncio.run_coroutine_threadsafe(client.aclose(), loop)
