"""The tool grammars, checked the strongest way without a model: random walks.

Each walk draws uniformly among the tokens llguidance allows at every step (the worst "model"
there is), on the test models' real tokenizer. Whatever it draws, a required or named call
must parse and validate against its tool's schema; with ``auto`` the text is free until the
format's marker, after which the call is enforced just the same.
"""

from __future__ import annotations

import random

import pytest

pytest.importorskip("llguidance", reason="tool constraints need llguidance (unillm[structured])")
pytest.importorskip("transformers", reason="the test tokenizer needs transformers")

from unillm.grammars import RowMatcher, compile_constraint
from unillm.structured import Structured
from unillm.tokenizer import HFTokenizer
from unillm.tools.constraints import closed, tool_grammar
from unillm.tools.formats import FORMATS
from unillm.tools.parsing import parse_text
from unillm.tools.plan import ToolPlan, special_id
from unillm.tools.request import tool_request

from .conftest import TOOLS, assert_valid_call

WALKS = 25


@pytest.fixture(scope="module")
def tokenizer():
    from unillm.testing.models import build_tokenizer

    return HFTokenizer.from_pretrained(str(build_tokenizer(add_bos=True)))


def walk(tokenizer, grammar: str, seed: int, force: str = "", steps: int = 400) -> list[int]:
    """Token ids drawn uniformly among the allowed ones (eos half the time it is allowed);
    `force` is written first, token by token, as a model that chose it would."""
    matcher = RowMatcher(compile_constraint(Structured(grammar=grammar), tokenizer))
    rng = random.Random(seed)
    eos = min(tokenizer.eos_token_ids)
    forced = tokenizer.hf.encode(force, add_special_tokens=False) if force else []
    out: list[int] = []
    for _ in range(steps):
        allowed = matcher.allowed_ids()
        assert allowed, "the grammar allowed nothing"
        if forced:
            token = forced.pop(0)
            assert token in allowed, f"the grammar refused {tokenizer.decode([token])!r}"
        elif eos in allowed and rng.random() < 0.5:
            return out
        else:
            token = rng.choice([t for t in allowed if t != eos] or allowed)
        matcher.advance(token)
        if token == eos or matcher.ended:
            return out
        out.append(token)
    pytest.fail(f"no end after {steps} tokens: {tokenizer.decode(out)!r}")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("parallel", [True, False])
def test_required_calls_always_parse_and_validate(tokenizer, fmt, parallel):
    request = tool_request(TOOLS, "required", parallel)
    grammar = tool_grammar(FORMATS[fmt], request, lambda _: None)
    for seed in range(WALKS):
        text = tokenizer.decode(walk(tokenizer, grammar, seed))
        content, calls = parse_text(FORMATS[fmt], text, request.names, str)
        assert calls and content is None, text
        assert parallel or len(calls) == 1, text
        for call in calls:
            assert_valid_call(call.name, call.arguments)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_named_tool_is_the_one_called(tokenizer, fmt):
    request = tool_request(TOOLS, {"type": "function", "function": {"name": "set_alarm"}})
    grammar = tool_grammar(FORMATS[fmt], request, lambda _: None)
    for seed in range(WALKS):
        text = tokenizer.decode(walk(tokenizer, grammar, seed))
        _, calls = parse_text(FORMATS[fmt], text, request.names, str)
        assert [c.name for c in calls] == ["set_alarm"], text
        assert set(assert_valid_call("set_alarm", calls[0].arguments)["at"]) == {"hour", "minute"}


@pytest.mark.parametrize("fmt,force", [("hermes", "I will check. <tool_call>"),
                                       ("mistral", "Let me see.[TOOL_CALLS]"),
                                       ("llama3_json", "{")])
def test_auto_leaves_text_free_until_the_marker_then_enforces_the_call(tokenizer, fmt, force):
    request = tool_request(TOOLS, "auto")
    grammar = tool_grammar(FORMATS[fmt], request, lambda _: None)
    for seed in range(WALKS):
        text = tokenizer.decode(walk(tokenizer, grammar, seed, force))
        _, calls = parse_text(FORMATS[fmt], text, request.names, str)
        assert calls, text
        for call in calls:
            assert_valid_call(call.name, call.arguments)
    free = tokenizer.decode(walk(tokenizer, grammar, 0, "Any text at all, 🙂 {x}"))
    assert free.startswith("Any text at all")


def test_special_token_markers_are_written_as_tokens_and_read_back(tmp_path):
    """A family whose marker is one special token (Mistral's [TOOL_CALLS]): the grammar names
    the token, decoding skips it, and the parser gets it back from the token ids."""
    from transformers import AutoTokenizer

    from unillm.testing.models import build_tokenizer

    hf = AutoTokenizer.from_pretrained(str(build_tokenizer(add_bos=True)))
    hf.add_special_tokens({"additional_special_tokens": ["[TOOL_CALLS]"]})
    tok = HFTokenizer(hf)
    marker = special_id(tok, "[TOOL_CALLS]")
    assert marker == len(hf) - 1
    request = tool_request(TOOLS, "required")
    grammar = tool_grammar(FORMATS["mistral"], request, lambda t: special_id(tok, t))
    assert f"<[{marker}]>" in grammar
    plan = ToolPlan(request, "constrained", None, None, marker_ids={marker: "[TOOL_CALLS]"})
    for seed in range(10):
        ids = walk(tok, grammar, seed)
        assert ids[0] == marker and "[TOOL_CALLS]" not in tok.decode(ids)
        _, calls = parse_text(FORMATS["mistral"], plan.parse_input(tok.decode(ids), ids,
                                                                   tok.decode), request.names, str)
        assert calls
        for call in calls:
            assert_valid_call(call.name, call.arguments)
        # a stream sees the marker as its own chunk
        assert plan.parse_input("", [marker]) == "[TOOL_CALLS]"


def test_declared_objects_are_closed_and_allof_is_left_alone():
    schema = {"type": "object", "properties": {"a": {"type": "object", "properties": {
        "b": {"type": "integer"}}}, "c": {"type": "array", "items": {
            "type": "object", "properties": {"d": {}}}}}}
    out = closed(schema)
    assert out["additionalProperties"] is False
    assert out["properties"]["a"]["additionalProperties"] is False
    assert out["properties"]["c"]["items"]["additionalProperties"] is False
    assert "additionalProperties" not in schema  # a copy
    combined = closed({"type": "object", "properties": {"x": {}},
                       "allOf": [{"properties": {"e": {}}}]})
    assert "additionalProperties" not in combined
    assert "additionalProperties" not in combined["allOf"][0]
    open_schema = {"type": "object", "properties": {"a": {}}, "additionalProperties": True}
    assert closed(open_schema)["additionalProperties"] is True
