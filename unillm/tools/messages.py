"""Conversations with tool calls, made ready for a chat template.

OpenAI's messages carry a call's arguments as JSON text (``function.arguments``); Hugging
Face chat templates expect a mapping (they write it with ``tojson``, and a string would come
out quoted twice). An assistant message that only calls tools has ``content: null``, which
Jinja would print as ``None``. `for_template` fixes both, once, for every tokenizer that
renders templates (transformers' and llama.cpp's), so a tool call and its ``tool`` reply
render back into the next turn's prompt the way the model was trained to read them.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidPromptError


def _call(call: Any) -> Any:
    if not isinstance(call, Mapping):
        return call
    call = dict(call)
    function = call.get("function")
    if isinstance(function, Mapping):
        function = dict(function)
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            try:
                function["arguments"] = json.loads(arguments) if arguments.strip() else {}
            except ValueError:
                pass  # not JSON: the template gets the text as it was sent
        call["function"] = function
    return call


def for_template(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for message in messages:
        message = dict(message)
        if message.get("tool_calls"):
            message["tool_calls"] = [_call(c) for c in message["tool_calls"]]
        if message.get("content") is None and ("tool_calls" in message
                                               or message.get("role") == "assistant"):
            message["content"] = ""
        out.append(message)
    return out


def takes_tools(method: Any) -> bool:
    """Whether a tokenizer's chat method accepts ``tools=`` (third-party tokenizers written
    before tool support do not)."""
    try:
        return "tools" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def chat_ids(tokenizer: Any, messages: Sequence[Mapping[str, Any]],
             tools: list[dict[str, Any]]) -> list[int]:
    """Prompt ids of a conversation rendered with `tools` by the model's template."""
    method = getattr(tokenizer, "chat_token_ids", None)
    if method is None or not takes_tools(method):
        raise InvalidPromptError(
            f"this engine's tokenizer ({type(tokenizer).__name__}) cannot render tools into "
            "the chat template (its chat_token_ids takes no tools=)")
    return list(method(messages, tools=tools))
