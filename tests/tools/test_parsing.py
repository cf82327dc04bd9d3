"""Reading tool calls out of text, in every format, streamed or whole (no engine needed).

The parser's promise is that a stream's deltas add up to the calls of the whole text,
whatever the chunking; these tests feed every reply in many random chunkings and compare.
"""

from __future__ import annotations

import json
import random

import pytest

from unillm import InvalidParameterError, ToolCallDelta
from unillm.tools.accumulate import ToolCallAccumulator
from unillm.tools.detect import format_in_template
from unillm.tools.formats import FORMATS, check_parser_name
from unillm.tools.parsing import ToolStreamParser, parse_text
from unillm.tools.request import tool_request

from .conftest import TOOLS

NAMES = {"get_weather", "add"}


def ids(k: int) -> str:
    return f"call_{k}"


# (format, reply, expected content, expected [(name, arguments)])
CASES = [
    ("hermes", 'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
     '</tool_call>\n<tool_call>\n{"arguments": {"a": [1, {"b": "}\\""}]}, "name": "add"}\n'
     "</tool_call>",
     "Sure.", [("get_weather", '{"city": "Paris"}'), ("add", '{"a": [1, {"b": "}\\""}]}')]),
    ("hermes", "plain text, a <tool_ that is not a marker", "plain text, a <tool_ that is not "
     "a marker", []),
    ("hermes", "  spaced reply \n", "  spaced reply \n", []),
    ("hermes", '<tool_call>\n{"foo": 1}\n</tool_call> after', '<tool_call>\n{"foo": 1}\n'
     "</tool_call> after", []),
    ("hermes", '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1}"}</tool_call>', None,
     [("add", '{"a": 1}')]),
    ("hermes", '<tool_call>\n{"name": "add"}\n</tool_call>', None, [("add", "{}")]),
    ("hermes", '<tool_call>\n{"name": "add", "arguments": null}\n</tool_call>', None,
     [("add", "{}")]),
    ("hermes", '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>\nDone.',
     "Done.", [("add", '{"a": 1}')]),
    ("hermes", '<tool_call>{"name": "get_weather", "arguments": {"city": "Zürich 東京 🙂"}}'
     "</tool_call>", None, [("get_weather", '{"city": "Zürich 東京 🙂"}')]),
    ("llama3_json", '{"name": "get_weather", "parameters": {"city": "Rome"}}; {"name": "add", '
     '"parameters": {"a": 1}}', None, [("get_weather", '{"city": "Rome"}'), ("add", '{"a": 1}')]),
    ("llama3_json", '  {"name": "Bob", "age": 3}', '  {"name": "Bob", "age": 3}', []),
    ("llama3_json", "Hello <|python_tag|>{\"name\": \"add\", \"parameters\": {}}", "Hello",
     [("add", "{}")]),
    ("llama3_json", "Just text.", "Just text.", []),
    ("mistral", '[TOOL_CALLS] [{"name": "add", "arguments": {"a": 1}}, {"name": "get_weather", '
     '"arguments": {"city": "X"}}]', None, [("add", '{"a": 1}'), ("get_weather", '{"city": "X"}')]),
    ("mistral", "[TOOL_CALLS] not an array", "[TOOL_CALLS] not an array", []),
]


@pytest.mark.parametrize("fmt,text,content,calls", CASES)
def test_whole_replies_parse_to_content_and_calls(fmt, text, content, calls):
    got_content, got_calls = parse_text(FORMATS[fmt], text, NAMES, ids)
    assert got_content == content
    assert [(c.name, c.arguments) for c in got_calls] == calls
    assert [c.id for c in got_calls] == [ids(k) for k in range(len(calls))]
    for call in got_calls:
        json.loads(call.arguments)


@pytest.mark.parametrize("fmt,text,content,calls", CASES)
def test_any_chunking_streams_the_same_calls_and_content(fmt, text, content, calls):
    whole = parse_text(FORMATS[fmt], text, NAMES, ids)
    for seed in range(150):
        rng = random.Random(seed)
        parser = ToolStreamParser(FORMATS[fmt], NAMES, ids)
        pieces, i = [], 0
        while i < len(text):
            k = rng.randint(1, 7)
            pieces.append(text[i:i + k])
            i += k
        streamed_content = ""
        built: dict[int, list[str]] = {}
        for out in [parser.feed(p) for p in pieces] + [parser.finish()]:
            streamed_content += out.content
            for delta in out.deltas:
                if delta.id is not None:  # a call's first piece: id and name, once
                    assert delta.index == len(built) and delta.name
                    built[delta.index] = [delta.id, delta.name, delta.arguments]
                else:
                    assert delta.index in built and delta.name is None
                    built[delta.index][2] += delta.arguments
        assert [tuple(built[k]) for k in sorted(built)] == \
            [(c.id, c.name, c.arguments) for c in whole[1]], pieces
        assert (streamed_content or None if whole[1] else streamed_content) == whole[0], pieces


def test_a_reply_cut_short_keeps_the_call_it_was_writing():
    content, calls = parse_text(FORMATS["hermes"], '<tool_call>\n{"name": "add", "arguments": '
                                '{"a": 4', NAMES, ids)
    assert content is None and [(c.name, c.arguments) for c in calls] == [("add", '{"a": 4')]
    content, calls = parse_text(FORMATS["hermes"], '<tool_call>\n{"na', NAMES, ids)
    assert calls == () and content == '<tool_call>\n{"na'


def test_the_name_is_announced_before_any_argument_and_arguments_stream():
    parser = ToolStreamParser(FORMATS["hermes"], NAMES, ids)
    assert parser.feed("<tool_call>\n{\"name\": \"ad").deltas == []
    first = parser.feed('d", "arguments": {"a": 1').deltas
    assert first == [ToolCallDelta(0, '{"a": 1', "call_0", "add")]
    assert parser.feed(', "b": 2}}\n</tool_call>').deltas == [ToolCallDelta(0, ', "b": 2}')]


def test_server_pieces_accumulate_by_index_whatever_the_server_habit():
    acc = ToolCallAccumulator()
    out = acc.feed([{"index": 0, "id": "a", "type": "function",
                     "function": {"name": "add", "arguments": ""}}])
    out += acc.feed([{"index": 1, "id": "b", "function": {"name": "get_weather",
                                                          "arguments": '{"ci'}}])
    out += acc.feed([{"index": 0, "function": {"arguments": '{"a": 1}'}}])
    out += acc.feed([{"index": 1, "function": {"arguments": 'ty": "X"}'}}])
    assert [(c.id, c.name, c.arguments) for c in acc.calls()] == [
        ("a", "add", '{"a": 1}'), ("b", "get_weather", '{"city": "X"}')]
    assert out[0].id == "a" and out[2] == ToolCallDelta(0, '{"a": 1}')
    # no index, no id, the name after the first arguments, arguments as an object
    acc = ToolCallAccumulator()
    assert acc.feed([{"function": {"arguments": '{"a"'}}]) == []
    announced = acc.feed([{"function": {"name": "add", "arguments": ": 2}"}}])
    assert announced[0].name == "add" and announced[0].arguments == '{"a": 2}'
    acc.feed([{"id": "z", "function": {"name": "get_weather", "arguments": {"city": "Y"}}}])
    calls = acc.calls()
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("add", {"a": 2}), ("get_weather", {"city": "Y"})]
    assert calls[0].id.startswith("call_") and calls[1].id == "z"


def test_tool_requests_are_validated_naming_the_field():
    request = tool_request(TOOLS, "required")
    assert request.choice == "required" and request.names == {"get_weather", "add", "set_alarm"}
    assert tool_request(TOOLS, {"type": "function", "function": {"name": "add"}}).function == "add"
    assert tool_request([t["function"] for t in TOOLS]).definitions == tool_request(TOOLS).definitions
    assert tool_request(None) is None and tool_request([]).choice == "none"
    assert tool_request([], "auto").choice == "none"
    bad = [
        ([{"type": "function", "function": {"name": "a b"}}], None, "tools[0].function.name"),
        ([{"type": "code"}], None, "tools[0].type"),
        ([{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}],
         None, "tools[0].function.parameters.type"),
        ([TOOLS[0], TOOLS[0]], None, "tools"),
        (TOOLS, "sometimes", "tool_choice"),
        (TOOLS, {"type": "function", "function": {"name": "nope"}}, "tool_choice.function.name"),
        (None, "required", "tool_choice"),
    ]
    for tools, choice, field in bad:
        with pytest.raises(InvalidParameterError) as err:
            tool_request(tools, choice)
        assert err.value.field == field, (tools, choice, err.value)


def test_formats_are_told_by_their_templates_and_unknown_names_are_refused():
    assert format_in_template("... <tool_call>\n{...}</tool_call>") == "hermes"
    assert format_in_template("[AVAILABLE_TOOLS] ... [TOOL_CALLS]") == "mistral"
    assert format_in_template("{{ '<|python_tag|>' }}") == "llama3_json"
    assert format_in_template("{{ messages }}") is None
    assert check_parser_name("qwen") == "hermes" and check_parser_name("llama3") == "llama3_json"
    with pytest.raises(InvalidParameterError, match="hermes, llama3_json, mistral"):
        check_parser_name("pythonic")
