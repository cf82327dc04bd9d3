"""A proxy that sits in front of a real server and misbehaves on request: answers the next
requests with an error status (429, 503...), cuts the connection after k stream events, stops
sending after k stream events, or ends the stream early as if it were complete. Everything it
does not break is the real server's answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class FaultProxy:
    target: str
    fail_next: list[int] = field(default_factory=list)  # statuses for the next requests
    retry_after: str | None = "0"
    drop_after_events: int | None = None  # close the connection mid-stream
    stall_after_events: int | None = None  # keep the connection open, send nothing more
    end_after_events: int | None = None  # end the response cleanly, as if the stream were over
    seen: list[str] = field(default_factory=list)  # "METHOD path" of every request received
    authorization: list[str | None] = field(default_factory=list)  # each request's header

    def app(self):
        import httpx
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response, StreamingResponse
        from starlette.routing import Route

        client = httpx.AsyncClient(timeout=None)

        async def forward(request: Request):
            self.seen.append(f"{request.method} {request.url.path}")
            self.authorization.append(request.headers.get("authorization"))
            if self.fail_next:
                status = self.fail_next.pop(0)
                headers = {"Retry-After": self.retry_after} if self.retry_after else {}
                return JSONResponse({"error": {"message": f"fault proxy: HTTP {status}"}},
                                    status_code=status, headers=headers)
            upstream = client.build_request(
                request.method, self.target + request.url.path, content=await request.body(),
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            )
            response = await client.send(upstream, stream=True)
            headers = {k: v for k, v in response.headers.items()
                       if k.lower() not in ("content-length", "transfer-encoding", "connection")}
            if "text/event-stream" not in response.headers.get("content-type", ""):
                body = await response.aread()
                await response.aclose()
                return Response(body, status_code=response.status_code, headers=headers)

            async def lines():
                events = 0
                try:
                    async for line in response.aiter_lines():
                        if line.startswith("data:"):
                            if self.drop_after_events is not None and events >= self.drop_after_events:
                                raise ConnectionAbortedError("fault proxy: dropping the connection")
                            if self.stall_after_events is not None and events >= self.stall_after_events:
                                await asyncio.sleep(3600)
                            if self.end_after_events is not None and events >= self.end_after_events:
                                return
                            events += 1
                        yield line + "\n"
                finally:
                    await response.aclose()

            return StreamingResponse(lines(), status_code=response.status_code, headers=headers)

        async def health(request: Request):
            return JSONResponse({"proxy": "ok"})

        return Starlette(routes=[
            Route("/__proxy_health", health),
            Route("/{path:path}", forward, methods=["GET", "POST"]),
        ])
