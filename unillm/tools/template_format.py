"""The tokenizer's own tool-call parser: transformers' ``response_template``.

A tokenizer may declare how its model's replies are laid out (``tokenizer.response_template``,
transformers 5): regions such as ``content``, ``reasoning_content`` and ``tool_calls``, with
the delimiters and content parser of each. Where it does, that declaration is the model's own
word and wins over unillm's guess from the chat template. `TemplateStreamParser` reads a
reply with transformers' `ResponseParser` (the same one `transformers serve` uses) behind the
interface of `parsing.ToolStreamParser`; a call is announced, whole, when its region closes.

Constraints need a format unillm can write: `as_tool_format` derives one when the template's
``tool_calls`` region is JSON between fixed delimiters; otherwise ``required`` and named tools
are refused with a message naming ``tool_parser``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from ..results import ToolCall, ToolCallDelta
from .formats import RESPONSE_TEMPLATE, ToolFormat
from .parsing import Parsed

_LEADING_SPACE = re.compile(r"^(?:\\s\*|\\s\+)")


def declared_template(tokenizer: Any) -> Mapping[str, Any] | None:
    """The tokenizer's ``response_template`` when it declares tool calls, else None."""
    hf = getattr(tokenizer, "hf", None)
    template = getattr(hf, "response_template", None)
    if isinstance(template, Mapping) and "tool_calls" in (template.get("fields") or {}):
        return template
    return None


def _literal(field: Mapping[str, Any], key: str) -> str | None:
    """The field's delimiter as one fixed string: `key` itself, or `key_pattern` that is an
    escaped string after an optional leading ``\\s*``."""
    value = field.get(key)
    if isinstance(value, str):
        return value
    pattern = field.get(f"{key}_pattern")
    if not isinstance(pattern, str):
        return None
    body = _LEADING_SPACE.sub("", pattern)
    literal = re.sub(r"\\(.)", r"\1", body)
    return literal if literal and re.escape(literal) == body else None


def as_tool_format(template: Mapping[str, Any]) -> ToolFormat | None:
    """A writable `ToolFormat` equal to the template's tool_calls region, or None."""
    field = template["fields"]["tool_calls"]
    opened, close = _literal(field, "open"), _literal(field, "close")
    transform = field.get("transform")
    plain = transform in (None, {"type": "function", "function": "{content}"})
    if not opened or not close or field.get("content", "text") != "json" or not plain \
            or field.get("content_args"):
        return None
    return ToolFormat(RESPONSE_TEMPLATE, "the tokenizer's response_template", opened, close,
                      "tagged", "\n", "arguments", ("arguments",), (), open_suffix="\n",
                      close_prefix="\n")


class TemplateStreamParser:
    """`ToolStreamParser`'s interface over transformers' `ResponseParser`."""

    def __init__(self, template: Mapping[str, Any], names: Collection[str],
                 call_id: Callable[[int], str], prefix: str, tools: list[dict[str, Any]]):
        from transformers.utils.chat_parsing.response_parser import ResponseParser

        self.call_id = call_id
        self.calls: list[ToolCall] = []
        self.content_parts: list[str] = []
        self._text = ""
        self._failed = False
        self._parser = ResponseParser(dict(template), prefix=prefix, tools=tools)
        fields = template["fields"]
        self._content_field = "content" if "content" in fields else None

    def feed(self, text: str) -> Parsed:
        self._text += text
        if self._failed:
            return self._as_content(text)
        try:
            events = self._parser.feed(text)
        except ValueError:
            return self._fail()
        return self._read(events)

    def finish(self) -> Parsed:
        if self._failed:
            return Parsed()
        try:
            _, events = self._parser.finalize()
        except ValueError:
            return self._fail()
        return self._read(events)

    @property
    def content(self) -> str | None:
        text = "".join(self.content_parts)
        if self.calls and not text.strip():
            return None
        return text

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(self.calls)

    def _read(self, events: list[dict[str, Any]]) -> Parsed:
        out = Parsed()
        for event in events:
            field = event.get("field")
            if event["type"] == "region_chunk" and field == self._content_field:
                out.content += event["text"]
                self.content_parts.append(event["text"])
            elif event["type"] == "region_close" and field == "tool_calls":
                for call in _calls(event["value"]):
                    index = len(self.calls)
                    name, arguments = call
                    self.calls.append(ToolCall(self.call_id(index), name, arguments))
                    out.deltas.append(ToolCallDelta(index, arguments, self.calls[-1].id, name))
        return out

    def _fail(self) -> Parsed:
        """A region the template's parser rejects (malformed JSON): the reply is content."""
        self._failed = True
        if self.calls:
            return Parsed()
        seen = "".join(self.content_parts)
        rest = self._text.removeprefix(seen)
        return self._as_content(rest)

    def _as_content(self, text: str) -> Parsed:
        self.content_parts.append(text)
        return Parsed(content=text)


def _calls(value: Any) -> list[tuple[str, str]]:
    """(name, arguments JSON) of each call in a closed tool_calls region's value."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        function = item.get("function", item) if isinstance(item, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            continue
        arguments = function.get("arguments", function.get("parameters", {}))
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments if arguments is not None else {},
                                   ensure_ascii=False)
        out.append((function["name"], arguments))
    return out
