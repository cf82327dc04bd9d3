"""Wire compatibility with what OpenAI's and vLLM's clients send and expect (issue 20)."""

from __future__ import annotations

import json

import httpx
import pytest

from ..conftest import require_engine, require_module
from .conftest import MODEL, running_server

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
        "temperature": 0}


def post(server, path, body, status=200):
    r = httpx.post(f"{server.url}{path}", json=body, timeout=120)
    assert r.status_code == status, r.text
    return r.json()


def error_of(server, path, body, status=400):
    error = post(server, path, body, status)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def sse_payloads(server, path, body):
    payloads = []
    with httpx.stream("POST", f"{server.url}{path}", json={**body, "stream": True},
                      timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                payloads.append(json.loads(line[6:]))
    return payloads


def test_nulls_that_openai_allows_are_accepted(server):
    body = {"model": MODEL, "prompt": "a", "max_tokens": 2, "stream": None, "echo": None,
            "stream_options": None, "temperature": None, "stop": None, "n": None}
    out = post(server, "/v1/completions", body)
    assert out["usage"]["completion_tokens"] >= 1
    assert post(server, "/v1/chat/completions", {**CHAT, "stream": None, "logprobs": None,
                                                 "response_format": None})["choices"]


def test_response_format_is_checked_field_by_field(server):
    assert post(server, "/v1/chat/completions", {**CHAT, "response_format": {"type": "text"}})
    error = error_of(server, "/v1/chat/completions",
                     {**CHAT, "response_format": {"type": "text", "junk": 1}})
    assert error["param"] == "response_format.junk"
    error = error_of(server, "/v1/chat/completions",
                     {**CHAT, "response_format": {"type": "json_schema"}})
    assert error["param"] == "response_format.json_schema"


def test_continuous_usage_stats_puts_the_usage_so_far_in_every_chunk(server):
    body = {"model": MODEL, "prompt": "count", "max_tokens": 5, "temperature": 0,
            "ignore_eos": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
    payloads = sse_payloads(server, "/v1/completions", body)
    with_choices = [p for p in payloads if p["choices"]]
    assert all(p["usage"] is not None for p in with_choices)
    completion = [p["usage"]["completion_tokens"] for p in with_choices]
    assert completion == sorted(completion) and completion[-1] == 5
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] == 5
    prompt = payloads[-1]["usage"]["prompt_tokens"]
    assert all(p["usage"]["prompt_tokens"] == prompt for p in with_choices)


def test_a_completion_without_max_tokens_stops_at_16(server):
    out = post(server, "/v1/completions", {"model": MODEL, "prompt": "x", "ignore_eos": True})
    assert out["usage"]["completion_tokens"] == 16
    assert out["choices"][0]["finish_reason"] == "length"


def test_a_vllm_style_request_with_its_extras_is_served(server, hf_generator):
    greedy = {"model": MODEL, "temperature": 0, "max_tokens": 12, "ignore_eos": True}
    plain = post(server, "/v1/completions", {**greedy, "prompt": "the"})["choices"][0]["text"]
    stop = plain[3:6]
    assert stop.strip() and stop in plain
    extras = {"include_stop_str_in_output": True, "skip_special_tokens": True,
              "spaces_between_special_tokens": False, "add_special_tokens": True,
              "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0}
    body = {**greedy, "prompt": "the", "stop": [stop], "ignore_eos": False, **extras}
    kept = post(server, "/v1/completions", body)["choices"][0]
    assert kept["finish_reason"] == "stop" and kept["text"].endswith(stop)
    assert kept["text"] == plain[: plain.index(stop) + len(stop)]
    streamed = "".join(c["text"] for p in sse_payloads(server, "/v1/completions", body)
                       for c in p["choices"])
    assert streamed == kept["text"]
    without = post(server, "/v1/completions", {**body, "include_stop_str_in_output": False})
    assert without["choices"][0]["text"] == plain[: plain.index(stop)]
    # add_special_tokens=false: the prompt loses its bos token, one token fewer
    with_bos = post(server, "/v1/completions", {**greedy, "prompt": "the"})["usage"]
    no_bos = post(server, "/v1/completions",
                  {**greedy, "prompt": "the", "add_special_tokens": False})["usage"]
    assert no_bos["prompt_tokens"] == with_bos["prompt_tokens"] - 1


def test_chat_template_extras_change_the_rendered_prompt(server):
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hel"}]
    def tokens(**kw):
        return post(server, "/tokenize", {"model": MODEL, "messages": msgs, **kw})["tokens"]

    full = tokens()
    cont = tokens(add_generation_prompt=False, continue_final_message=True)
    assert len(cont) < len(full)  # no eos after "hel", no assistant header
    chat = {**CHAT, "messages": msgs}
    out = post(server, "/v1/chat/completions",
               {**chat, "add_generation_prompt": False, "continue_final_message": True,
                "chat_template_kwargs": {"unused_flag": True}})
    assert out["usage"]["prompt_tokens"] == len(cont)
    error = error_of(server, "/v1/chat/completions", {**chat, "continue_final_message": True})
    assert error["param"] == "continue_final_message"
    error = error_of(server, "/v1/chat/completions",
                     {**chat, "chat_template_kwargs": {"tokenize": True}})
    assert error["param"] == "chat_template_kwargs"


@pytest.mark.parametrize("fields,param,route", [
    ({"prompt_logprobs": 1}, "prompt_logprobs", "/v1/chat/completions"),  # completions only
    ({"skip_special_tokens": False, "spaces_between_special_tokens": False},
     "spaces_between_special_tokens", "/v1/completions")])
def test_extras_the_core_cannot_honour_are_a_named_400(server, fields, param, route):
    body = {"model": MODEL, "prompt": "a", **fields} if route == "/v1/completions" else \
        {**CHAT, **fields}
    error = error_of(server, route, body)
    assert error["param"] == param and error["code"] == "unsupported_parameter"


def test_skip_special_tokens_false_is_served_with_the_special_tokens_in_the_text(server):
    # A small bias on </s> (id 2) makes the tiny model's greedy path take it once, mid-text;
    # ignore_eos goes on past it (the bias is what the transformers engine applies natively).
    body = {"model": MODEL, "prompt": "the", "max_tokens": 12, "temperature": 0,
            "ignore_eos": True, "logit_bias": {"2": 2.5}}
    dropped = post(server, "/v1/completions", body)["choices"][0]["text"]
    kept_body = {**body, "skip_special_tokens": False}
    kept = post(server, "/v1/completions", kept_body)["choices"][0]["text"]
    assert "</s>" in kept and "</s>" not in dropped
    assert kept.replace("</s>", "") == dropped
    streamed = "".join(c["text"] for p in sse_payloads(server, "/v1/completions", kept_body)
                       for c in p["choices"])
    assert streamed == kept
    chat = {**CHAT, "max_tokens": 12, "temperature": 0, "ignore_eos": True,
            "logit_bias": {"2": 100}}
    out = post(server, "/v1/chat/completions", {**chat, "skip_special_tokens": False})
    assert out["choices"][0]["message"]["content"] == "</s>" * 12
    assert post(server, "/v1/chat/completions", chat)["choices"][0]["message"]["content"] == ""


def test_the_context_error_is_worded_as_clients_match_it(server):
    error = error_of(server, "/v1/completions",
                     {"model": MODEL, "prompt": "word " * 3000, "max_tokens": 5})
    assert error["message"].startswith("This model's maximum context length is 2048 tokens. "
                                       "However, you requested ")
    assert "in the prompt, 5 in the completion" in error["message"]
    error = error_of(server, "/v1/chat/completions",
                     {**CHAT, "messages": [{"role": "user", "content": "word " * 3000}]})
    assert "in the messages" in error["message"]


def test_litellm_raises_context_window_exceeded(server):
    litellm = require_module("litellm", "LiteLLM is a serve-client test dependency "
                             "(the test-serve-clients extra)", "serve-clients")
    with pytest.raises(litellm.ContextWindowExceededError):
        litellm.completion(model=f"openai/{MODEL}", api_base=server.v1, api_key="x",
                           messages=[{"role": "user", "content": "word " * 3000}],
                           max_tokens=5, num_retries=0)


def test_unknown_fields_get_a_suggestion_and_only_working_fields_are_listed(server):
    error = error_of(server, "/v1/completions",
                     {"model": MODEL, "prompt": "a", "max_new_tokens": 3})
    assert "Did you mean 'max_tokens'?" in error["message"]
    listed = error["message"].split("accepts: ")[1]
    assert "include_stop_str_in_output" in listed
    assert "logit_bias" in listed
    for refused in ("suffix", "best_of"):
        assert refused not in listed
    assert "echo" in listed and "prompt_logprobs" in listed  # served (docs/scoring.md)


def test_every_error_is_openai_shaped_404_and_405_included(server):
    for r in (httpx.get(f"{server.url}/nope", timeout=30),
              httpx.get(f"{server.v1}/completions", timeout=30),
              httpx.get(f"{server.v1}/models/other", timeout=30)):
        assert r.status_code in (404, 405)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(f"{server.v1}/completions", timeout=30).status_code == 405


def test_model_card_tokenize_detokenize_version(server, hf_generator):
    card = httpx.get(f"{server.v1}/models/{MODEL}", timeout=30).json()
    assert card["id"] == MODEL and card["max_model_len"] == 2048
    ids = hf_generator.tokenizer.encode("hello world")
    tok = post(server, "/tokenize", {"model": MODEL, "prompt": "hello world"})
    assert tok["tokens"] == ids and tok["count"] == len(ids) and tok["max_model_len"] == 2048
    back = post(server, "/detokenize", {"model": MODEL, "tokens": ids})["prompt"]
    assert back == hf_generator.tokenizer.decode(ids)
    assert error_of(server, "/detokenize", {"tokens": [10**9]})["param"] == "tokens"
    import unillm

    assert httpx.get(f"{server.url}/version", timeout=30).json() == {
        "version": unillm.__version__}


def test_openapi_is_built_from_the_request_models(server):
    doc = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    body = doc["paths"]["/v1/completions"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/CompletionRequest")
    fields = doc["components"]["schemas"]["CompletionRequest"]["properties"]
    assert {"include_stop_str_in_output", "add_special_tokens", "stream"} <= set(fields)
    chat = doc["components"]["schemas"]["ChatRequest"]["properties"]
    assert {"chat_template_kwargs", "continue_final_message"} <= set(chat)
    for path in ("/v1/models/{model_id}", "/tokenize", "/detokenize", "/version"):
        assert path in doc["paths"]


def test_no_chat_template_is_a_400_naming_the_option(hf_generator):
    hf = hf_generator.tokenizer.hf
    saved = hf.chat_template
    hf.chat_template = None
    try:
        with running_server(hf_generator) as live:
            error = error_of(live, "/v1/chat/completions", CHAT)
            assert error["code"] == "chat_template_missing" and "--chat-template" in error[
                "message"]
        template = "{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
        with running_server(hf_generator, chat_template=template) as live:
            out = post(live, "/v1/chat/completions", CHAT)
            rendered = post(live, "/tokenize", {"messages": CHAT["messages"]})
            assert rendered["tokens"] == list(hf.encode("[hi]", add_special_tokens=False))
            assert out["usage"]["prompt_tokens"] == rendered["count"]
    finally:
        hf.chat_template = saved


def test_a_chat_template_a_bare_gguf_cannot_take_is_refused_at_start(tiny_llama):
    """A bare .gguf renders its own file's template (llama.cpp's tokenizer, no Hugging Face
    one): --chat-template would change nothing there, so the server refuses to start with it
    instead of ignoring it."""
    require_engine("llamacpp")
    import unillm
    from unillm.serve.app import create_app
    from unillm.serve.config import ServeConfig
    from unillm_llamacpp.convert import cached_gguf

    with unillm.load("llamacpp", str(cached_gguf(tiny_llama, "f32"))) as gen:
        with pytest.raises(ValueError, match="--chat-template needs a Hugging Face tokenizer"):
            create_app(gen, ServeConfig(served_model_name=MODEL, chat_template="{{ 1 }}"))
        create_app(gen, ServeConfig(served_model_name=MODEL))  # without it: starts


def test_a_template_that_refuses_the_messages_is_a_400(hf_generator):
    template = "{{ raise_exception('roles must alternate') }}"
    with running_server(hf_generator, chat_template=template) as live:
        error = error_of(live, "/v1/chat/completions", CHAT)
        assert error["param"] == "messages" and "roles must alternate" in error["message"]


def test_the_openai_client_sends_vllm_extras_through_extra_body(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0)
    out = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0,
        stream=True, stream_options={"include_usage": True},
        extra_body={"include_stop_str_in_output": True, "skip_special_tokens": True,
                    "spaces_between_special_tokens": True, "add_special_tokens": False,
                    "chat_template_kwargs": {}, "add_generation_prompt": True,
                    "continue_final_message": False, "top_k": 20, "min_p": 0.05,
                    "ignore_eos": True})
    chunks = list(out)
    assert chunks[-1].usage.completion_tokens == 4
    with pytest.raises(openai.BadRequestError) as info:  # a 400: the client does not retry
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a"}],
                                       extra_body={"prompt_logprobs": 1})
    assert info.value.body["param"] == "prompt_logprobs"
