"""The `openai` engine with tools: it sends them to the server (which renders, enforces and
parses them) and rebuilds the server's streamed pieces by index into whole calls.

Against real servers that do tool calling: `unillm serve` itself, and vLLM's own server with
its Hermes tool parser (where UNILLM_VLLM_PYTHON names vLLM's environment).
"""

from __future__ import annotations

import pytest

import unillm
from unillm import SamplingParams as SP

from ..conftest import require_engine
from ..serve.conftest import MODEL, running_server
from .conftest import PROMPTS, TOOLS, assert_valid_call, conversation

pytest.importorskip("fastapi", reason="unillm serve needs the serve extra")
pytest.importorskip("llguidance", reason="tool constraints need llguidance (unillm[structured])")
pytest.importorskip("jsonschema")
pytest.importorskip("httpx", reason="the openai engine needs httpx")

GREEDY = SP(max_tokens=96, temperature=0.0)
NAMED = {"type": "function", "function": {"name": "add"}}


@pytest.fixture(scope="module")
def local(tool_models):
    require_engine("transformers")
    gen = unillm.load("transformers", tool_models("qwen2-tools"), dtype="float32")
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def remote(local):
    with running_server(local) as live:
        gen = unillm.load("openai", MODEL, base_url=live.v1)
        yield gen
        gen.close()


def pieces_to_calls(chunks) -> list[tuple[str, str, str]]:
    calls: dict[int, list[str]] = {}
    for chunk in chunks:
        for d in chunk.tool_calls or ():
            if d.id is not None:
                calls[d.index] = [d.id, d.name, d.arguments]
            else:
                calls[d.index][2] += d.arguments
    return [tuple(calls[k]) for k in sorted(calls)]


def test_tools_are_sent_and_the_servers_calls_come_back(remote, local):
    conv = conversation(PROMPTS[1])
    for choice in ("required", NAMED):
        out = remote.chat(conv, GREEDY, tools=TOOLS, tool_choice=choice,
                          parallel_tool_calls=False)
        here = local.chat(conv, GREEDY, tools=TOOLS, tool_choice=choice,
                          parallel_tool_calls=False)
        assert out.tool_format == "server" and out.finish_reason == "tool_calls"
        assert out.engine_params["tool_choice"] == choice
        assert [(c.name, c.arguments) for c in out.tool_calls] == \
            [(c.name, c.arguments) for c in here.tool_calls]
        assert out.content is None
        for call in out.tool_calls:
            assert_valid_call(call.name, call.arguments)


def test_streamed_pieces_are_rebuilt_by_index(remote):
    conv = conversation(PROMPTS[0])
    whole = remote.chat(conv, GREEDY, tools=TOOLS, tool_choice="required")
    stream = remote.stream_chat(conv, GREEDY, tools=TOOLS, tool_choice="required")
    chunks = list(stream)
    done = stream.completion
    assert len(done.tool_calls) > 1  # several indices, interleaved with nothing else
    assert pieces_to_calls(chunks) == [(c.id, c.name, c.arguments) for c in done.tool_calls]
    assert [(c.name, c.arguments) for c in done.tool_calls] == \
        [(c.name, c.arguments) for c in whole.tool_calls]
    assert done.finish_reason == whole.finish_reason


def test_async_calls_through_the_server(remote):
    import asyncio

    async def run():
        out = await remote.achat(conversation("Add 1 and 2."), GREEDY, tools=TOOLS,
                                 tool_choice=NAMED)
        stream = remote.astream_chat(conversation("Add 1 and 2."), GREEDY, tools=TOOLS,
                                     tool_choice=NAMED)
        chunks = [c async for c in stream]
        return out, chunks, stream.completion

    out, chunks, done = asyncio.run(run())
    assert [c[1:] for c in pieces_to_calls(chunks)] == \
        [(c.name, c.arguments) for c in out.tool_calls] == \
        [(c.name, c.arguments) for c in done.tool_calls]


def test_vllm_server_with_its_tool_parser(tool_models):
    """vLLM's server renders and parses the tools itself (``--tool-call-parser hermes``); the
    engine sends them and returns the server's calls, whole or rebuilt from its pieces. What
    the calls hold is vLLM's doing: on this random model vLLM 0.32 answers ``required`` with
    arguments its schema does not allow (``{}``, ``null``), so only their shape is checked."""
    from ..servers.vllm import VLLMServers, python

    if python() is None:
        pytest.skip("vLLM's server runs in its own environment: set UNILLM_VLLM_PYTHON")

    class ToolServers(VLLMServers):
        def command(self, model_dir: str, port: int, alias: str) -> list[str]:
            return [*super().command(model_dir, port, alias), "--enable-auto-tool-choice",
                    "--tool-call-parser", "hermes"]

    servers = ToolServers()
    tools = TOOLS[:2]
    try:
        url = servers.base_url(tool_models("qwen2-tools"))
        with unillm.load("openai", "test-model", base_url=url + "/v1", server="vllm",
                         timeout=120.0) as gen:
            conv = conversation(PROMPTS[1])
            for choice in ("required", NAMED):
                out = gen.chat(conv, GREEDY, tools=tools, tool_choice=choice)
                assert out.tool_calls and out.tool_format == "server", out.text
                assert out.engine_params["tool_choice"] == choice
                assert {c.name for c in out.tool_calls} <= {"get_weather", "add"}
                assert all(c.id and isinstance(c.arguments, str) for c in out.tool_calls)
                stream = gen.stream_chat(conv, GREEDY, tools=tools, tool_choice=choice)
                chunks = list(stream)
                done = stream.completion
                assert [c[1:] for c in pieces_to_calls(chunks)] == \
                    [(c.name, c.arguments) for c in done.tool_calls]
                assert [c.name for c in done.tool_calls] == [c.name for c in out.tool_calls]
    finally:
        servers.close()
