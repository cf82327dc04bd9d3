"""Shared tools, conversations and checks for the tool-calling tests (docs/tools.md).

The tools' schemas are bounded (enums, integer ranges, short strings) so a random-weight model,
forced into a call, finishes it within a few dozen tokens; the tests then check what must hold
for any model: every call parses, names an offered tool and validates against its schema.
"""

from __future__ import annotations

import json

import pytest

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "required": ["city"], "properties": {
            "city": {"type": "string", "maxLength": 12},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}}},
    {"type": "function", "function": {
        "name": "add", "description": "Add two small numbers.",
        "parameters": {"type": "object", "required": ["a", "b"], "properties": {
            "a": {"type": "integer", "minimum": 0, "maximum": 99},
            "b": {"type": "integer", "minimum": 0, "maximum": 99}}}}},
    {"type": "function", "function": {
        "name": "set_alarm", "description": "Nested arguments, with a $ref.",
        "parameters": {"type": "object", "required": ["at"], "$defs": {
            "time": {"type": "object", "required": ["hour", "minute"], "properties": {
                "hour": {"type": "integer", "minimum": 0, "maximum": 23},
                "minute": {"type": "integer", "minimum": 0, "maximum": 59}}}},
            "properties": {"at": {"$ref": "#/$defs/time"},
                           "label": {"type": "string", "maxLength": 8}}}}},
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
PROMPTS = ["What is the weather in Paris?", "Add 2 and 3.", "Wake me at 7:30.",
           "Bonjour ! Quel temps fait-il à Zürich ?", "東京の天気は？", "Hi"]

TOOL_PRESETS = {"qwen2-tools": "hermes", "llama-tools": "llama3_json", "mistral-tools": "mistral"}


def conversation(prompt: str) -> list[dict]:
    return [{"role": "system", "content": "You call tools."}, {"role": "user", "content": prompt}]


def assert_valid_call(name: str, arguments: str, offered=None) -> dict:
    """The call names an offered tool and its arguments are JSON valid for that tool."""
    import jsonschema

    assert name in (offered or SCHEMAS), name
    parsed = json.loads(arguments)
    jsonschema.validate(parsed, SCHEMAS[name])
    return parsed


@pytest.fixture(scope="session")
def tool_models():
    """preset -> model directory, built on first use."""
    from unillm.testing import build_test_model

    cache: dict[str, str] = {}

    def get(preset: str) -> str:
        if preset not in cache:
            cache[preset] = str(build_test_model(preset))
        return cache[preset]

    return get
