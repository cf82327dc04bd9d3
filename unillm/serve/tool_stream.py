"""Streamed tool calls, exactly as OpenAI streams them.

A chunk of a sample with tools becomes one event per piece: its content (if any), then each
tool-call delta on its own (``{"index", "id", "type", "function": {"name", "arguments"}}``
for a call's first piece, ``{"index", "function": {"arguments"}}`` after), and the finish
reason last, on an event with an empty delta, as OpenAI's own stream ends. Clients that
accumulate by ``index`` (the openai SDK's helpers, LangChain, LiteLLM) rebuild every call;
one event per piece also serves those that read only the first entry of ``tool_calls``.
"""

from __future__ import annotations

from typing import Any

from ..results import Chunk
from .responses import chat_chunk, sse


def tool_chunk_events(rid: str, created: int, model: str, chunk: Chunk,
                      logprobs: dict[str, Any] | None, with_usage: bool,
                      so_far: dict[str, int] | None) -> str | None:
    """The SSE events of one chunk of a sample with tools (None if it says nothing)."""
    deltas: list[dict[str, Any]] = []
    if chunk.content:
        deltas.append({"content": chunk.content})
    for piece in chunk.tool_calls or ():
        deltas.append({"tool_calls": [piece.to_openai()]})
    if chunk.finish_reason is not None:
        deltas.append({})
    if not deltas and logprobs:
        deltas.append({})
    if not deltas:
        return None
    events = []
    for k, delta in enumerate(deltas):
        last = k == len(deltas) - 1
        payload = chat_chunk(rid, created, model, chunk.index, delta,
                             chunk.finish_reason if last else None,
                             logprobs if k == 0 else None, with_usage)
        if so_far is not None and last:
            payload["usage"] = so_far
        events.append(sse(payload))
    return "".join(events)
