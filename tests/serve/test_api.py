"""The OpenAI API surface: the official client unchanged, raw HTTP (what curl sends), the
400s naming the bad field, auth, limits."""

from __future__ import annotations

import json

import httpx
import pytest

import unillm
from unillm import SamplingParams as SP

from ..conftest import require_module
from .conftest import MODEL, metric, running_server

openai = require_module("openai", "the openai client is a test dependency", "serve")

PROMPT = "def fibonacci(n):"
GREEDY = SP(max_tokens=12, temperature=0.0)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0, timeout=60)


def test_openai_client_completions_equal_the_library(client, hf_generator):
    expected = hf_generator.generate(PROMPT, GREEDY)
    out = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0)
    assert out.choices[0].text == expected.text
    assert out.choices[0].finish_reason == expected.finish_reason
    assert out.usage.prompt_tokens == expected.timing.prompt_tokens
    assert out.usage.completion_tokens == expected.timing.output_tokens

    stream = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0,
                                       stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected.text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == expected.finish_reason
    assert chunks[-1].usage.completion_tokens == expected.timing.output_tokens


def test_openai_client_chat_equals_the_library(client, hf_generator):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Bonjour"}]
    expected = hf_generator.chat(messages, GREEDY)
    out = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12,
                                         temperature=0)
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == expected.text
    assert out.usage.prompt_tokens == len(expected.prompt_token_ids)

    stream = client.chat.completions.create(model=MODEL, messages=messages,
                                            max_completion_tokens=12, temperature=0, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected.text
    assert chunks[-1].choices[0].finish_reason == expected.finish_reason


def test_vllm_extras_and_n_and_logprobs_through_extra_body(client, hf_generator):
    params = SP(max_tokens=10, temperature=0.0, min_tokens=10, ignore_eos=True, n=2, logprobs=3)
    expected = hf_generator.generate(PROMPT, params)
    out = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=10, temperature=0, n=2, logprobs=3,
        extra_body={"min_tokens": 10, "ignore_eos": True, "top_k": -1, "repetition_penalty": 1.0},
    )
    assert [c.index for c in out.choices] == [0, 1]
    assert [c.text for c in out.choices] == [expected.text, expected.text]
    lp = out.choices[0].logprobs
    assert len(lp.tokens) == 10 and len(lp.top_logprobs[0]) == 3
    assert lp.token_logprobs == pytest.approx([t.logprob for t in expected.logprobs], abs=1e-4)

    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5, temperature=0,
        logprobs=True, top_logprobs=2, stream=True)
    entries = [e for c in chat if c.choices and c.choices[0].logprobs
               for e in c.choices[0].logprobs.content]
    assert len(entries) == 5 and all(len(e.top_logprobs) == 2 for e in entries)


def test_a_list_of_prompts_returns_one_choice_per_prompt(server, hf_generator):
    prompts = ["one", "two two", "three three three"]
    expected = hf_generator.generate(prompts, GREEDY)
    body = {"model": MODEL, "prompt": prompts, "max_tokens": 12, "temperature": 0}
    out = httpx.post(f"{server.v1}/completions", json=body, timeout=60).json()
    assert [c["text"] for c in sorted(out["choices"], key=lambda c: c["index"])] == [
        e.text for e in expected]
    ids = hf_generator.tokenizer.encode("one")
    out = httpx.post(f"{server.v1}/completions", json={**body, "prompt": ids}, timeout=60).json()
    assert out["choices"][0]["text"] == expected[0].text


def test_raw_sse_stream_is_openai_shaped(server, hf_generator):
    expected = hf_generator.generate(PROMPT, GREEDY)
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 12, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{server.v1}/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert len({c["id"] for c in chunks}) == 1
    assert "".join(c["choices"][0]["text"] for c in chunks) == expected.text


def test_models_health_and_metrics(server):
    models = httpx.get(f"{server.v1}/models", timeout=30).json()
    assert models["data"][0]["id"] == MODEL
    assert models["data"][0]["max_model_len"] == 2048
    assert httpx.get(f"{server.url}/health", timeout=30).json() == {"status": "ok"}
    httpx.post(f"{server.v1}/completions", json={"model": MODEL, "prompt": "a", "max_tokens": 2},
               timeout=60)
    assert metric(server.url, "unillm_requests_total",
                  {"route": "/v1/completions", "status": "200"}) >= 1
    assert metric(server.url, "unillm_time_to_first_token_seconds_count") >= 1
    assert metric(server.url, "unillm_generation_tokens_total") >= 2


# -- bad requests ---------------------------------------------------------------------------
def _error(server, body, path="completions", status=400):
    r = httpx.post(f"{server.v1}/{path}", json=body, timeout=60)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize("field,value", [
    ("temperature", -1), ("top_p", 0), ("max_tokens", 0), ("n", 0), ("seed", -5),
    ("presence_penalty", 3), ("top_k", -2), ("min_p", 2), ("max_tokens", "ten"),
    ("stop_token_ids", [-1]), ("logprobs", 50),
])
def test_an_out_of_range_field_is_a_400_naming_it(server, field, value):
    error = _error(server, {"model": MODEL, "prompt": "x", field: value})
    assert error["param"] == field
    assert field in error["message"]


def test_bad_requests_name_the_field(server):
    assert _error(server, {"model": MODEL, "prompt": "x", "max_new_tokens": 5})["param"] == \
        "max_new_tokens"
    assert _error(server, {"model": MODEL, "prompt": "x", "logit_bias": {"5": 300}})[
        "param"] == "logit_bias"
    assert _error(server, {"model": MODEL, "prompt": "x", "logit_bias": {"99999": 1}})[
        "param"] == "logit_bias"
    assert _error(server, {"model": MODEL, "prompt": "x", "echo": True, "stream": True})[
        "param"] == "echo"  # echo is served whole, not streamed
    assert _error(server, {"model": MODEL, "prompt": [1, "a"]})["param"] == "prompt"
    assert _error(server, {"model": MODEL, "prompt": [99999]})["param"] == "prompt"
    assert _error(server, {"prompt": "x"})["param"] == "model"
    assert _error(server, {"model": "other", "prompt": "x"}, status=404)["code"] == \
        "model_not_found"
    assert _error(server, {"model": MODEL, "prompt": "x", "stream_options": {
        "include_usage": True}})["param"] == "stream_options"
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    assert _error(server, {**chat, "max_completion_tokens": 0}, "chat/completions")["param"] == \
        "max_completion_tokens"
    assert _error(server, {**chat, "top_logprobs": 2}, "chat/completions")["param"] == \
        "top_logprobs"
    assert _error(server, {**chat, "tools": [{"type": "function"}]}, "chat/completions")[
        "param"] == "tools[0].function"
    assert _error(server, {"model": MODEL, "messages": [{"role": "robot", "content": "x"}]},
                  "chat/completions")["param"] == "messages[0].role"
    r = httpx.post(f"{server.v1}/completions", content=b"{not json", timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_accepted_and_ignored_fields_change_nothing(server, hf_generator):
    expected = hf_generator.generate(PROMPT, GREEDY).text
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 12, "temperature": 0, "user": "u1",
            "logit_bias": {}, "top_k": 0, "best_of": 1}
    out = httpx.post(f"{server.v1}/completions", json=body, timeout=60).json()
    assert out["choices"][0]["text"] == expected


def test_a_prompt_longer_than_the_context_is_a_400_and_the_server_survives(server, hf_generator):
    long_prompt = "word " * 3000
    error = _error(server, {"model": MODEL, "prompt": long_prompt, "max_tokens": 5})
    assert error["code"] == "context_length_exceeded" and error["param"] == "prompt"
    n = len(hf_generator.tokenizer.encode("word " * 1000))
    error = _error(server, {"model": MODEL, "prompt": "word " * 1000, "max_tokens": 2048 - n + 1})
    assert error["param"] == "max_tokens"
    # without max_tokens, a completion's 16 (OpenAI's default) is lowered to what the context
    # leaves, and a chat's cap is too
    ids = [hf_generator.tokenizer.encode("word")[-1]] * (2048 - 5)
    out = httpx.post(f"{server.v1}/completions", timeout=120, json={
        "model": MODEL, "prompt": ids, "temperature": 0, "ignore_eos": True}).json()
    assert out["usage"]["completion_tokens"] == 5
    out = httpx.post(f"{server.v1}/completions", timeout=120, json={
        "model": MODEL, "prompt": "word", "temperature": 0, "ignore_eos": True}).json()
    assert out["usage"]["completion_tokens"] == 16
    assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200


def test_max_tokens_above_the_cap_is_a_400(hf_generator):
    with running_server(hf_generator, max_tokens_cap=16) as live:
        error = _error(live, {"model": MODEL, "prompt": "x", "max_tokens": 17})
        assert error["param"] == "max_tokens" and "16" in error["message"]
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                "max_completion_tokens": 17}
        assert _error(live, chat, "chat/completions")["param"] == "max_completion_tokens"
        out = httpx.post(f"{live.v1}/completions", json={
            "model": MODEL, "prompt": "x", "ignore_eos": True}, timeout=60).json()
        assert out["usage"]["completion_tokens"] == 16


def test_request_body_cap_is_a_413(hf_generator):
    with running_server(hf_generator, max_body_bytes=1000) as live:
        r = httpx.post(f"{live.v1}/completions", timeout=30,
                       json={"model": MODEL, "prompt": "x" * 2000})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

        def chunked():  # no Content-Length: the cap holds while reading
            for _ in range(20):
                yield b"x" * 100

        r = httpx.post(f"{live.v1}/completions", content=chunked(), timeout=30)
        assert r.status_code == 413
        assert httpx.post(f"{live.v1}/completions", timeout=60, json={
            "model": MODEL, "prompt": "x", "max_tokens": 2}).status_code == 200


# -- auth -----------------------------------------------------------------------------------
def test_api_key_guards_every_route_but_health(hf_generator):
    with running_server(hf_generator, api_key="s3cret") as live:
        assert httpx.get(f"{live.url}/health", timeout=30).status_code == 200
        for method, path in [("GET", "/v1/models"), ("GET", "/metrics"),
                             ("POST", "/v1/completions"), ("POST", "/v1/chat/completions"),
                             ("GET", "/nowhere")]:
            r = httpx.request(method, f"{live.url}{path}", timeout=30, json={})
            assert r.status_code == 401, path
            assert r.json()["error"]["code"] == "invalid_api_key"
            assert r.headers["www-authenticate"] == "Bearer"
            wrong = httpx.request(method, f"{live.url}{path}", timeout=30,
                                  headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
        good = openai.OpenAI(base_url=live.v1, api_key="s3cret", max_retries=0)
        assert good.models.list().data[0].id == MODEL
        bad = openai.OpenAI(base_url=live.v1, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.completions.create(model=MODEL, prompt="x", max_tokens=2)
        assert metric(live.url, "unillm_requests_total", {"status": "401"},
                      headers={"Authorization": "Bearer s3cret"}) >= 10


def test_unsupported_sampling_field_is_a_400_not_silently_dropped(tiny_llama):
    """The conformance suite's minimal engine honours no logprobs / penalties natively."""
    from tests.conformance.emulated import EmulationPlugin

    if "transformers-minimal" not in {e.name for e in unillm.engines()}:
        unillm.register_plugin(EmulationPlugin(), name="conformance-emulation")
    gen = unillm.load("transformers-minimal", tiny_llama, dtype="float32")
    try:
        with running_server(gen) as live:
            error = _error(live, {"model": MODEL, "prompt": "x", "presence_penalty": 0.5})
            assert error["param"] == "presence_penalty"
            assert error["code"] == "unsupported_parameter"
            chat = {"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                    "logprobs": True, "top_logprobs": 2}
            assert _error(live, chat, "chat/completions")["param"] == "top_logprobs"
    finally:
        gen.close()
