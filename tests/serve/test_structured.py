"""Structured output through `unillm serve`: OpenAI's response_format and vLLM's
structured_outputs, with the clients people use (the openai package), on a random model."""

from __future__ import annotations

import json
import re

import pytest

from ..conftest import require_module
from .conftest import MODEL

jsonschema = require_module("jsonschema", "validating outputs needs jsonschema", "structured")
require_module("llguidance", "structured output needs llguidance (unillm[structured])",
               "structured")

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "rank"],
          "properties": {"city": {"type": "string", "maxLength": 10},
                         "rank": {"type": "integer", "minimum": 1, "maximum": 50}}}


@pytest.fixture(scope="module")
def client(server):
    openai = require_module("openai", "the openai client is a test dependency", "serve")
    return openai.OpenAI(base_url=server.v1, api_key="none", max_retries=0)


def _chat(client, server, stream=False, **extra):
    kwargs = dict(model=MODEL, messages=[{"role": "user", "content": "a city?"}],
                  max_tokens=extra.pop("max_tokens", 64), temperature=0)
    if not stream:
        return client.chat.completions.create(**kwargs, **extra).choices[0].message.content
    pieces = client.chat.completions.create(**kwargs, stream=True, **extra)
    return "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)


@pytest.mark.parametrize("stream", [False, True])
def test_response_format_json_schema_is_enforced(client, server, stream):
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA,
                                                   "strict": True}}
    text = _chat(client, server, stream, response_format=fmt)
    jsonschema.validate(json.loads(text), SCHEMA)


def test_response_format_json_object_is_an_object(client, server):
    text = _chat(client, server, response_format={"type": "json_object"},
                 max_tokens=200, extra_body={"temperature": 1.0, "seed": 2})
    try:
        assert isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        assert text.startswith("{")  # cut at max_tokens: an object's prefix


@pytest.mark.parametrize("field,value,check", [
    ("regex", r"[a-z]{2,5}-[0-9]{2}", lambda t: re.fullmatch(r"[a-z]{2,5}-[0-9]{2}", t)),
    ("choice", ["Paris", "Köln", "東京"], lambda t: t in ("Paris", "Köln", "東京")),
    ("json", SCHEMA, lambda t: jsonschema.validate(json.loads(t), SCHEMA) is None),
])
def test_vllm_structured_outputs_are_served_unchanged(client, server, field, value, check):
    out = client.completions.create(model=MODEL, prompt="x", max_tokens=48, temperature=0,
                                    extra_body={"structured_outputs": {field: value}})
    assert check(out.choices[0].text), out.choices[0].text


def test_bad_constraints_are_400s_naming_the_field(client, server):
    openai = require_module("openai", "the openai client is a test dependency", "serve")
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=MODEL, prompt="x", max_tokens=4, extra_body={
            "structured_outputs": {"json": {"type": "object", "if": {}}}})
    assert info.value.body["param"] == "structured_outputs" and '["if"]' in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=MODEL, prompt="x", max_tokens=4, extra_body={
            "structured_outputs": {"regex": "a", "choice": ["b"]}})
    assert info.value.body["param"] == "structured_outputs"
