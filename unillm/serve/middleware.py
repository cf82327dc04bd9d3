"""Plain ASGI middleware: bearer auth, the request-body cap, and status counting.

Written against ASGI rather than FastAPI so they hold for every route, including unknown ones
(a 404 is counted, and needs the key like any other route but `/health`).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .errors import APIError
from .metrics import ServeMetrics

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/health"})


async def send_error(send: Send, error: APIError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BearerAuth:
    """Every route but `/health` needs ``Authorization: Bearer <api key>``."""

    def __init__(self, app: ASGIApp, api_key: str):
        self.app = app
        self.key = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        sent = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if not hmac.compare_digest(sent, self.key):
            return await send_error(send, APIError(
                401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                type="authentication_error", code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"}))
        return await self.app(scope, receive, send)


class BodyLimit:
    """Reads a request body up to `max_bytes` before the app sees it; larger is a 413.

    The app then gets the buffered body, and later `receive()` calls go to the server, so a
    client's disconnect still reaches the app.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        too_large = APIError(413, f"the request body exceeds this server's limit of "
                                  f"{self.max_bytes} bytes", code="request_too_large")
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await send_error(send, too_large)
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await send_error(send, too_large)
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(parts), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


class StatusCounter:
    """Counts every response by route and status code (`unillm_requests_total`)."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, routes: Iterable[str]):
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in self.routes else "other"
        status: list[int] = []

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                self.metrics.requests.labels(route, str(message["status"])).inc()
            await send(message)

        try:
            await self.app(scope, receive, counted)
        except BaseException:
            if not status:
                self.metrics.requests.labels(route, "500").inc()
            raise
