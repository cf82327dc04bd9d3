"""The `mlc` engine (MLC LLM in-process, through `mlc_llm.MLCEngine`).

MLC LLM cannot be installed here (its wheels come from MLC's own index; PyPI has placeholders),
so the tests that need it are skipped with that reason. One test runs the engine's code through
a stand-in for MLCEngine's Python API: it checks every call against the keyword arguments
MLCEngine's documented `create` methods accept, and answers with a real model (llama-cpp-python's
server, whose answers have the same OpenAI shape). Its name says so.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from typing import Any

import pytest

import unillm
from unillm import SamplingParams as SP

HAVE_MLC = importlib.util.find_spec("mlc_llm") is not None
needs_mlc = pytest.mark.skipif(
    not HAVE_MLC, reason="needs mlc_llm (not installable here: PyPI has placeholders only; "
    "see docs/engines/mlc.md)",
)


def test_mlc_is_listed_with_its_install_command_when_missing():
    info = {i.name: i for i in unillm.engines()}["mlc"]
    if HAVE_MLC:
        assert info.status == "installed"
        return
    assert info.status == "missing" and "mlc_llm" in info.error
    assert "docs/engines/mlc.md" in info.install_hint
    with pytest.raises(unillm.EngineUnavailableError, match="mlc_llm"):
        unillm.load("mlc", "dist/some-model-MLC")


@needs_mlc
def test_mlc_generates_streams_and_chats_with_a_compiled_model():
    model = os.environ.get("UNILLM_MLC_MODEL")
    if not model:
        pytest.skip("set UNILLM_MLC_MODEL to a compiled MLC model directory (or HF://mlc-ai/...)")
    with unillm.load("mlc", model) as gen:
        params = SP(max_tokens=16, temperature=0.0)
        out = gen.generate(["Hello", "The capital of France is"], params)
        assert all(o.timing.output_tokens >= 1 for o in out)
        assert "".join(c.text for c in gen.stream("Hello", params)) == out[0].text
        assert gen.chat([{"role": "user", "content": "hi"}], params).text is not None


# -- the engine's code, through a stand-in for MLCEngine's API ---------------------------------
# Keyword arguments of MLCEngine.completions.create / chat.completions.create (mlc_llm/serve/
# engine.py), as documented.
COMPLETION_KWARGS = {"prompt", "model", "best_of", "echo", "frequency_penalty", "presence_penalty",
                     "logprobs", "logit_bias", "max_tokens", "n", "seed", "stop", "stream",
                     "stream_options", "suffix", "temperature", "top_p", "user",
                     "response_format", "request_id", "extra_body"}
CHAT_KWARGS = {"messages", "model", "frequency_penalty", "presence_penalty", "logprobs",
               "top_logprobs", "logit_bias", "max_tokens", "n", "seed", "stop", "stream",
               "stream_options", "temperature", "top_p", "tools", "tool_choice", "user",
               "response_format", "request_id", "extra_body"}


class _Response:
    def __init__(self, data: dict[str, Any]):
        self.data = data

    def model_dump(self) -> dict[str, Any]:
        return self.data


class _Create:
    """`create(**kwargs)` as MLCEngine has it, answered by llama-cpp-python's server."""

    def __init__(self, base_url: str, route: str, allowed: set[str]):
        self.base_url, self.route, self.allowed = base_url, route, allowed

    def create(self, **kwargs):
        import httpx

        unknown = set(kwargs) - self.allowed
        if unknown:
            raise TypeError(f"create() got unexpected keyword arguments {sorted(unknown)}")
        debug = (kwargs.pop("extra_body", None) or {}).get("debug_config") or {}
        body = {**kwargs, "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}  # llama.cpp off
        if debug.get("ignore_eos"):
            body["min_tokens"] = body["max_tokens"]
        url = f"{self.base_url}/{self.route}"
        if not kwargs.get("stream"):
            return _Response(httpx.post(url, json=body, timeout=60).json())

        def chunks():
            import json

            with httpx.stream("POST", url, json=body, timeout=60) as r:
                for line in r.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        yield _Response(json.loads(line[6:]))

        return chunks()


def _standin_module(base_url: str) -> types.ModuleType:
    module = types.ModuleType("mlc_llm")

    class MLCEngine:
        def __init__(self, model, device="auto", *, model_lib=None, mode="local",
                     engine_config=None, enable_tracing=False):
            self.completions = _Create(base_url, "completions", COMPLETION_KWARGS)
            self.chat = types.SimpleNamespace(
                completions=_Create(base_url, "chat/completions", CHAT_KWARGS))
            self.terminated = False

        def terminate(self):
            self.terminated = True

    module.MLCEngine = MLCEngine
    return module


def test_mlc_engine_code_through_an_mlc_api_standin_mlc_not_installed_here(
    llama_cpp_server, tiny_llama, monkeypatch
):
    from unillm.backends.mlc import MLCEngine, MLCOptions

    _, options = llama_cpp_server(tiny_llama)
    monkeypatch.setitem(sys.modules, "mlc_llm", _standin_module(options["base_url"]))
    engine = MLCEngine("dist/llama-tiny-MLC", MLCOptions())
    engine.name = "mlc"
    api = engine.mlc
    with unillm.Generator(engine, engine_name="mlc", model="dist/llama-tiny-MLC") as gen:
        with unillm.load("openai", "test-model", **options) as http:
            params = SP(max_tokens=24, temperature=0.0, ignore_eos=True)
            expected = http.generate("The quick brown fox", params)
            out = gen.generate("The quick brown fox", params)
            assert out.text == expected.text and out.timing.output_tokens == 24
            assert out.engine_params["extra_body"] == {"debug_config": {"ignore_eos": True}}
            assert "".join(c.text for c in gen.stream("The quick brown fox", params)) == out.text
            stop = out.text[5:7]
            cut = gen.generate("The quick brown fox", params.replace(stop=[stop]))
            assert cut.text == out.text[: out.text.find(stop)] and cut.stop_reason == stop
            chat = gen.chat([{"role": "user", "content": "hi"}], SP(max_tokens=8, temperature=0))
            assert chat.text == http.chat([{"role": "user", "content": "hi"}],
                                          SP(max_tokens=8, temperature=0)).text
            with pytest.raises(unillm.UnsupportedParameterError, match="top_k"):
                gen.generate("x", SP(max_tokens=4, top_k=3))
    assert api.terminated  # closing the generator terminates MLC's engine
