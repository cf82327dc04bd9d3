"""Tool calling through `unillm serve`, with the clients people use: the `openai` package
(plain and streamed, and its stream helper that rebuilds calls), LangChain's
``ChatOpenAI(...).bind_tools(...)`` and ``.with_structured_output(...)``, and LiteLLM's
``completion(..., tools=...)`` (plain, and streamed through its own chunk builder: the path
where streamed arguments used to be lost). On every local engine that constrains; a
random-weight model is forced to call (``required`` / a named tool), so every call must come
back whole and valid.
"""

from __future__ import annotations

import json
from typing import Literal

import pytest

import unillm

from ..conftest import require_engine
from ..serve.conftest import MODEL, running_server
from .conftest import PROMPTS, SCHEMAS, TOOLS, assert_valid_call

pytest.importorskip("fastapi", reason="unillm serve needs the serve extra")
pytest.importorskip("llguidance", reason="tool constraints need llguidance (unillm[structured])")
pytest.importorskip("jsonschema")
openai = pytest.importorskip("openai")

ENGINES = {"transformers": {"dtype": "float32"},
           "llamacpp": {"quantization": "f32", "kv_cache_type": "f32"}}
NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module", params=sorted(ENGINES))
def live(request, tool_models):
    require_engine(request.param)
    gen = unillm.load(request.param, tool_models("qwen2-tools"), **ENGINES[request.param])
    with running_server(gen) as server:
        yield server
    gen.close()


@pytest.fixture(scope="module")
def client(live):
    return openai.OpenAI(base_url=live.v1, api_key="none", max_retries=0)


def ask(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def rebuilt(chunks) -> tuple[list[tuple[str, str, str]], str | None]:
    """Calls rebuilt from streamed deltas by index, as a careful client does."""
    calls: dict[int, list[str]] = {}
    finish = None
    for chunk in chunks:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for piece in choice.delta.tool_calls or ():
                if piece.id is not None:
                    assert piece.index not in calls and piece.type == "function"
                    calls[piece.index] = [piece.id, piece.function.name,
                                          piece.function.arguments or ""]
                else:  # later pieces: index and argument text only
                    assert piece.function.name is None
                    calls[piece.index][2] += piece.function.arguments
    return [tuple(calls[k]) for k in sorted(calls)], finish


def test_openai_client_required_calls_validate_over_prompts_and_seeds(client):
    for seed, prompt in enumerate(PROMPTS):
        r = client.chat.completions.create(
            model=MODEL, messages=ask(prompt), tools=TOOLS, tool_choice="required",
            parallel_tool_calls=False, max_tokens=128, temperature=1.0, seed=seed)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        assert len(choice.message.tool_calls) == 1
        call = choice.message.tool_calls[0]
        assert call.type == "function" and call.id.startswith("call_")
        assert_valid_call(call.function.name, call.function.arguments)


def test_openai_client_streams_calls_that_rebuild_to_the_plain_response(client):
    body = dict(model=MODEL, messages=ask(PROMPTS[0]), tools=TOOLS, tool_choice="required",
                max_tokens=96, temperature=0.0)
    plain = client.chat.completions.create(**body).choices[0]
    calls, finish = rebuilt(client.chat.completions.create(**body, stream=True))
    assert finish == plain.finish_reason
    assert [(n, a) for _, n, a in calls] == [
        (c.function.name, c.function.arguments) for c in plain.message.tool_calls]
    assert len(calls) > 1  # parallel calls (this model goes on calling to max_tokens)
    one = {**body, "parallel_tool_calls": False}
    plain = client.chat.completions.create(**one).choices[0]
    assert plain.finish_reason == "tool_calls"
    with client.chat.completions.stream(**one) as stream:  # the SDK's own accumulation
        final = stream.get_final_completion().choices[0].message
    assert [(c.function.name, c.function.arguments) for c in final.tool_calls] == \
        [(c.function.name, c.function.arguments) for c in plain.message.tool_calls]


def test_a_conversation_with_a_tool_reply_goes_on(client):
    first = client.chat.completions.create(
        model=MODEL, messages=ask("Weather in Oslo?"), tools=TOOLS, tool_choice=NAMED,
        max_tokens=96, temperature=0.0).choices[0].message
    call = first.tool_calls[0]
    assert_valid_call("get_weather", call.function.arguments, {"get_weather"})
    history = ask("Weather in Oslo?") + [first.model_dump(exclude_none=True),
                                         {"role": "tool", "tool_call_id": call.id,
                                          "content": "Snow, -3 C."}]
    answer = client.chat.completions.create(model=MODEL, messages=history, tools=TOOLS,
                                            tool_choice="none", max_tokens=8, temperature=0.0)
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_langchain_bind_tools_and_structured_output(live):
    pytest.importorskip("langchain_openai", reason="install unillm[test-serve-clients]")
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, Field

    class GetWeather(BaseModel):
        """The weather in a city."""

        city: str = Field(max_length=12)
        unit: Literal["celsius", "fahrenheit"]

    class Verdict(BaseModel):
        answer: Literal["yes", "no"]
        score: int = Field(ge=0, le=9)

    llm = ChatOpenAI(base_url=live.v1, api_key="none", model=MODEL, temperature=0,
                     max_tokens=96, max_retries=0)
    bound = llm.bind_tools([GetWeather], tool_choice="required", parallel_tool_calls=False)
    message = bound.invoke("Weather in Lima?")
    assert [c["name"] for c in message.tool_calls] == ["GetWeather"]
    GetWeather.model_validate(message.tool_calls[0]["args"])
    streamed = None
    for chunk in bound.stream("Weather in Lima?"):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed.tool_calls == [{**message.tool_calls[0], "id": streamed.tool_calls[0]["id"]}]
    for method in ("json_schema", "function_calling"):
        verdict = llm.with_structured_output(Verdict, method=method).invoke("Is it?")
        assert isinstance(verdict, Verdict), method


def test_litellm_completion_with_tools_plain_and_streamed(live):
    litellm = pytest.importorskip("litellm")
    body = dict(model=f"openai/{MODEL}", api_base=live.v1, api_key="none",
                messages=ask(PROMPTS[1]), tools=TOOLS, tool_choice="required", max_tokens=96,
                temperature=0.0, num_retries=0)
    plain = litellm.completion(**body).choices[0]  # parallel calls: several indices
    expected = [(c.function.name, c.function.arguments) for c in plain.message.tool_calls]
    whole = expected if plain.finish_reason == "tool_calls" else expected[:-1]
    assert whole and plain.finish_reason in ("tool_calls", "length")
    for name, arguments in whole:
        assert_valid_call(name, arguments)
    chunks = list(litellm.completion(**body, stream=True))
    built = litellm.stream_chunk_builder(chunks, messages=body["messages"]).choices[0]
    assert [(c.function.name, c.function.arguments) for c in built.message.tool_calls] == expected
    assert built.finish_reason == plain.finish_reason


def test_bad_tools_are_400s_naming_the_field(client):
    for tools, choice, param in [
        ([{"type": "function", "function": {"name": "no spaces"}}], None,
         "tools[0].function.name"),
        (TOOLS, {"type": "function", "function": {"name": "missing"}},
         "tool_choice.function.name"),
        ([{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"x": {"type": "string", "if": {}}}}}}],
         "required", "tools"),
    ]:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model=MODEL, messages=ask("x"), tools=tools,
                                           tool_choice=choice, max_tokens=4)
        assert err.value.body["param"] == param, err.value.body
    assert json.loads(json.dumps(SCHEMAS))  # the shared schemas stay plain JSON


def test_the_raw_stream_is_shaped_as_openai_streams_calls(live):
    """On the wire: one piece per event; a call's first piece has index, id, type and name
    with empty arguments, later ones only index and argument text; the finish reason comes
    last, on an empty delta; no event mixes content into a reply of only calls."""
    import httpx

    body = {"model": MODEL, "messages": ask(PROMPTS[0]), "tools": TOOLS, "stream": True,
            "tool_choice": "required", "max_tokens": 96, "temperature": 0.0}
    events = []
    with httpx.stream("POST", f"{live.v1}/chat/completions", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    choices = [e["choices"][0] for e in events]
    assert choices[0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["delta"]["tool_calls"] for c in choices if "tool_calls" in c["delta"]]
    assert pieces and all(len(p) == 1 for p in pieces)
    seen = set()
    for (piece,) in pieces:
        if piece["index"] not in seen:
            seen.add(piece["index"])
            assert set(piece) == {"index", "id", "type", "function"}
            assert piece["type"] == "function" and set(piece["function"]) == {"name", "arguments"}
        else:
            assert set(piece) == {"index", "function"} and set(piece["function"]) == {"arguments"}
    assert choices[-1]["delta"] == {} and choices[-1]["finish_reason"] in ("tool_calls", "length")
    assert all(c["finish_reason"] is None for c in choices[:-1])
    assert not any(c["delta"].get("content") for c in choices[1:])
