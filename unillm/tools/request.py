"""`ToolRequest`: the tools a chat call offers the model and how it may use them.

Validated here once, so `Generator.chat(tools=...)` and the server's ``tools`` field give the
same messages: each names the field (``tools[1].function.name``) and what is allowed. Tools
are taken in OpenAI's format (``{"type": "function", "function": {"name", "description",
"parameters"}}``) or as the bare ``function`` object, which Hugging Face chat templates also
accept.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidParameterError

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
"""A tool name: OpenAI's rule (letters, digits, underscores, dashes; at most 64), plus dots.
Names are written into grammars and templates as JSON strings, so nothing else may slip in."""

CHOICES = ("auto", "none", "required")
OWNER = "Generator.chat"


def _bad(field: str, value: Any, allowed: str) -> InvalidParameterError:
    return InvalidParameterError(field, value, allowed, owner=OWNER)


@dataclass(frozen=True)
class FunctionTool:
    """One function the model may call: its name, what it does, and the JSON schema of its
    arguments (an object schema; `{}` when the tool takes none)."""

    name: str
    description: str | None
    parameters_json: str  # canonical JSON text: the request stays hashable (plans are cached)
    strict: bool | None = None

    @property
    def parameters(self) -> dict[str, Any]:
        return json.loads(self.parameters_json)

    def to_openai(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        function["parameters"] = self.parameters
        if self.strict is not None:
            function["strict"] = self.strict
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolRequest:
    """What a chat call allows: `tools`, `choice` (``auto``: the model decides; ``none``: no
    call; ``required``: at least one call; ``function``: exactly the tool `function`),
    `parallel` (several calls in one reply) and `parser` (a tool-call format name chosen by the
    caller, else taken from the model)."""

    tools: tuple[FunctionTool, ...]
    choice: str = "auto"
    function: str | None = None
    parallel: bool = True
    parser: str | None = None

    @property
    def names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.tools)

    @functools.cached_property
    def definitions(self) -> list[dict[str, Any]]:
        """The tools in OpenAI's format: what chat templates render and servers receive."""
        return [t.to_openai() for t in self.tools]

    @property
    def offered(self) -> tuple[FunctionTool, ...]:
        """The tools a call may name: one with a named tool_choice, else all."""
        if self.function is None:
            return self.tools
        return tuple(t for t in self.tools if t.name == self.function)

    def openai_choice(self) -> str | dict[str, Any]:
        if self.function is not None:
            return {"type": "function", "function": {"name": self.function}}
        return self.choice

    def openai_fields(self) -> dict[str, Any]:
        """The request fields an OpenAI-compatible server takes for these tools."""
        return {"tools": self.definitions, "tool_choice": self.openai_choice(),
                "parallel_tool_calls": self.parallel}


def _tool(index: int, value: Any) -> FunctionTool:
    where = f"tools[{index}]"
    if not isinstance(value, Mapping):
        raise _bad(where, value, "a tool: {'type': 'function', 'function': {'name': ..., "
                   "'parameters': {...}}}")
    if "function" in value or "type" in value:
        if value.get("type", "function") != "function":
            raise _bad(f"{where}.type", value.get("type"), "'function' (the only tool type)")
        extra = sorted(set(value) - {"type", "function"})
        if extra:
            raise _bad(f"{where}.{extra[0]}", value[extra[0]], "only 'type' and 'function'")
        function, where = value.get("function"), f"{where}.function"
    else:
        function = value
    if not isinstance(function, Mapping):
        raise _bad(where, function, "an object with name, description, parameters")
    extra = sorted(set(function) - {"name", "description", "parameters", "strict"})
    if extra:
        raise _bad(f"{where}.{extra[0]}", function[extra[0]],
                   "only name, description, parameters, strict")
    name = function.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise _bad(f"{where}.name", name, "1 to 64 letters, digits, '_', '-' or '.'")
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise _bad(f"{where}.description", description, "a string")
    parameters = function.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, Mapping):
        raise _bad(f"{where}.parameters", parameters, "a JSON schema object")
    if parameters.get("type", "object") != "object":
        raise _bad(f"{where}.parameters.type", parameters.get("type"),
                   "'object': a tool's arguments are a JSON object")
    strict = function.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise _bad(f"{where}.strict", strict, "true, false or null")
    try:
        text = json.dumps(parameters, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise _bad(f"{where}.parameters", parameters, f"JSON ({exc})") from None
    return FunctionTool(name, description, text, strict)


def _choice(value: Any, names: frozenset[str]) -> tuple[str, str | None]:
    if value is None:
        return ("auto" if names else "none"), None
    if isinstance(value, str):
        if value not in CHOICES:
            raise _bad("tool_choice", value, "'auto', 'none', 'required' or "
                       "{'type': 'function', 'function': {'name': ...}}")
        if value == "required" and not names:
            raise _bad("tool_choice", value, "'none' or 'auto' when no tools are given")
        return (value if names else "none"), None  # auto without tools: nothing to call
    if isinstance(value, Mapping):
        function = value.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if value.get("type", "function") != "function" or not isinstance(name, str):
            raise _bad("tool_choice", value, "{'type': 'function', 'function': {'name': ...}}")
        if name not in names:
            raise _bad("tool_choice.function.name", name,
                       f"the name of a given tool ({', '.join(sorted(names)) or 'none given'})")
        return "function", name
    raise _bad("tool_choice", value, "'auto', 'none', 'required' or a named function")


def tool_request(tools: Sequence[Any] | None, tool_choice: Any = None,
                 parallel_tool_calls: bool | None = None,
                 tool_parser: str | None = None) -> ToolRequest | None:
    """The validated request, or None when the call offers no tools and sets no choice (a
    plain chat). Raises `InvalidParameterError` naming the bad field."""
    if tools is None and tool_choice is None:
        return None
    if tools is not None and (isinstance(tools, (str, Mapping)) or not isinstance(tools, Sequence)):
        raise _bad("tools", tools, "a list of tools")
    parsed = tuple(_tool(i, t) for i, t in enumerate(tools or ()))
    names = [t.name for t in parsed]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise _bad("tools", duplicate, "tools with distinct names")
    choice, function = _choice(tool_choice, frozenset(names))
    if parallel_tool_calls is not None and not isinstance(parallel_tool_calls, bool):
        raise _bad("parallel_tool_calls", parallel_tool_calls, "true, false or null")
    if tool_parser is not None:
        from .formats import check_parser_name

        check_parser_name(tool_parser)
    return ToolRequest(parsed, choice, function,
                       True if parallel_tool_calls is None else parallel_tool_calls, tool_parser)
