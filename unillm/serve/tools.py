"""Tool calling on ``/v1/chat/completions``: the request's tools, and the calls in the reply.

The request's ``tools``, ``tool_choice`` and ``parallel_tool_calls`` become a
`ToolRequest` (the library's own validation, so a bad tool is a 400 naming it, e.g.
``tools[0].function.name``); the format is the generator's `tool_parser` (``unillm serve
--tool-parser``), else the one spelled by ``--chat-template``, else the model's own. A reply's
calls go out as OpenAI sends them: ``message.tool_calls`` with finish reason ``tool_calls``,
or, streamed, ``delta.tool_calls`` pieces (`tool_stream.py`).
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidParameterError
from ..results import Sample
from ..tools.detect import format_in_template
from ..tools.request import ToolRequest, tool_request
from .errors import from_unillm
from .schemas import ChatRequest

NAMES = {"tool_parser": "tools", "tools": "tools", "tool_choice": "tool_choice",
         "parallel_tool_calls": "parallel_tool_calls"}
"""Library fields -> the request field a 400 names (the server's format is not the client's
choice, so a format that cannot be told is reported against ``tools``)."""


def request_tools(req: ChatRequest, tool_parser: str | None,
                  chat_template: str | None) -> ToolRequest | None:
    """The request's tools, validated; None for a plain chat."""
    if req.tools is None and req.tool_choice is None:
        return None
    tools = [t.model_dump(exclude_none=True) for t in req.tools or ()]
    choice = req.tool_choice
    if choice is not None and not isinstance(choice, str):
        choice = choice.model_dump()
    parser = tool_parser or (format_in_template(chat_template) if chat_template else None)
    try:
        return tool_request(tools, choice, req.parallel_tool_calls, parser)
    except InvalidParameterError as exc:
        raise from_unillm(exc, NAMES, "messages") from None


def message(sample: Sample) -> dict[str, Any]:
    """The choice's ``message``: content, and the tool calls when the request had tools."""
    if sample.tool_calls is None:
        return {"role": "assistant", "content": sample.text}
    out: dict[str, Any] = {"role": "assistant", "content": sample.content}
    if sample.tool_calls:
        out["tool_calls"] = [call.to_openai() for call in sample.tool_calls]
    return out
