"""The `openai` engine against llama-cpp-python's own OpenAI-compatible server (started by the
tests on loopback; the shared semantics are in tests/conformance, target
openai-llama-cpp-python). No HTTP response here is mocked."""

from __future__ import annotations

import asyncio
import json

import pytest

import unillm
from unillm import SamplingParams as SP

from ..conftest import require_engine

PROMPTS = ["The quick brown fox", "def fibonacci(n):\n    return", "x", "import os\n", "Hello",
           "1 2 3", "while True:", "SELECT * FROM"]
GREEDY = SP(max_tokens=16, temperature=0.0, ignore_eos=True)


@pytest.fixture(scope="module")
def server(llama_cpp_server, tiny_llama):
    require_engine("openai")
    name, options = llama_cpp_server(tiny_llama)
    return name, options


@pytest.fixture(scope="module")
def gen(server):
    name, options = server
    g = unillm.load("openai", name, **options)
    yield g
    g.close()


def test_the_model_name_can_come_from_the_server(server):
    _, options = server
    with unillm.load("openai", **options) as g:
        assert g.model == "test-model"
        assert g.info["server_models"] == ["test-model"]


def test_llama_cpp_server_defaults_are_sent_switched_off(gen):
    # llama-cpp-python's server would otherwise sample with top_k 40, min_p 0.05, top_p 0.95
    # and repeat_penalty 1.1 (the greedy parity checks in tests/conformance show the effect).
    sent = gen.generate("x", SP(max_tokens=2, temperature=0.7)).engine_params
    assert sent["top_k"] == 0 and sent["min_p"] == 0.0 and sent["top_p"] == 1.0
    assert sent["repeat_penalty"] == 1.0 and sent["mirostat_mode"] == 0
    assert sent["temperature"] == 0.7 and sent["endpoint"] == "/completions"


def test_a_list_of_prompts_runs_concurrently_with_the_same_results(gen, server):
    name, options = server
    one_by_one = [gen.generate(p, GREEDY).text for p in PROMPTS]
    with unillm.load("openai", name, **{**options, "max_concurrency": 4}) as g4:
        together = g4.generate(PROMPTS, GREEDY)
    assert [c.text for c in together] == one_by_one
    assert together.run.output_tokens == 16 * len(PROMPTS)


def test_usage_figures_come_from_the_server(gen, hf_generator):
    out = gen.generate(PROMPTS[1], SP(max_tokens=8, temperature=0.0))
    assert out.timing.prompt_tokens == len(hf_generator.tokenizer.encode(PROMPTS[1]))
    assert out.timing.source == "end" and out.timing.ttft is None  # not streamed: not observed


def test_chat_uses_the_servers_chat_template(gen, hf_generator):
    messages = [{"role": "user", "content": "Bonjour, ça va ?"}]
    params = SP(max_tokens=16, temperature=0.0)
    out = gen.chat(messages, params)
    assert out.engine_params["endpoint"] == "/chat/completions"
    # The GGUF carries the checkpoint's chat template: the server renders the same prompt as
    # the checkpoint's tokenizer (whose text starts with the bos token the server adds itself).
    # (Compared with the same server's completion, not with transformers: on this prompt the
    # random model has a near tie, 5.7725 vs 5.7716, that float32 kernels may break either way.)
    rendered = hf_generator.tokenizer.chat_text(messages)
    bos = hf_generator.tokenizer.hf.bos_token
    assert rendered.startswith(bos)
    assert out.text == gen.generate(rendered[len(bos):], params).text
    streamed = "".join(c.text for c in gen.stream_chat(messages, params))
    assert streamed == out.text


def test_parameters_the_server_cannot_honour_are_refused(gen):
    for field, value in [("repetition_penalty", 1.2), ("logprobs", 2), ("stop_token_ids", [5])]:
        with pytest.raises(unillm.UnsupportedParameterError, match=field):
            gen.generate("x", SP(max_tokens=4, **{field: value}))
    # min_tokens is native (it defers eos) but cannot defer stop strings that unillm matches
    with pytest.raises(unillm.UnsupportedParameterError, match="min_tokens"):
        gen.generate("x", SP(max_tokens=8, min_tokens=2, stop=["a"]))


def test_the_server_profile_decides_what_is_accepted(server):
    name, options = server
    with unillm.load("openai", name, **{**options, "server": "openai"}) as plain:
        assert plain.generate("x", SP(max_tokens=4, temperature=0.0)).text
        for field, value in [("top_k", 5), ("min_p", 0.1), ("ignore_eos", True)]:
            with pytest.raises(unillm.UnsupportedParameterError, match=field):
                plain.generate("x", SP(max_tokens=4, **{field: value}))


def test_extra_body_cannot_override_unillm_fields(server):
    name, options = server
    with pytest.raises(unillm.InvalidParameterError, match="top_k"):
        unillm.load("openai", name, **{**options, "extra_body": {"top_k": 40}})


def test_async_calls_share_nothing_across_event_loops(gen):
    # asyncio.run makes a new loop each time; the engine keeps one client per loop
    first = asyncio.run(gen.agenerate(PROMPTS[:3], GREEDY))
    second = asyncio.run(gen.agenerate(PROMPTS[:3], GREEDY))
    assert [c.text for c in first] == [c.text for c in second]


def test_the_command_line_streams_from_a_server_without_a_model_name(server):
    import os
    import re
    import subprocess
    import sys

    _, options = server
    out = subprocess.run(
        [sys.executable, "-m", "unillm.cli", "generate", "-e", "openai",
         "-o", f"base_url={options['base_url']}", "-o", "server=llama-cpp-python",
         "-p", "max_tokens=6", "-p", "temperature=0", "-p", "ignore_eos=true", "Hello"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    assert re.search(r"output_tokens\s+6\b", out.stderr), out.stderr


def test_unillm_serve_in_front_of_a_server_as_a_gateway(gen):
    """`unillm serve` over the openai engine: clients of unillm's server get the upstream
    server's answers (requests go straight to the engine's native astream)."""
    pytest.importorskip("fastapi", reason="unillm serve needs the serve extra")
    import httpx

    from unillm.serve import ServeConfig, create_app

    from ..servers import serve_in_thread

    params = SP(max_tokens=12, temperature=0.0, ignore_eos=True)
    expected = gen.generate(PROMPTS[1], params).text
    body = {"model": "gateway", "prompt": PROMPTS[1], "max_tokens": 12, "temperature": 0.0,
            "ignore_eos": True}
    app = create_app(gen, ServeConfig(served_model_name="gateway"))
    with serve_in_thread(app, "/health") as url:
        whole = httpx.post(url + "/v1/completions", json=body, timeout=60).json()
        assert whole["choices"][0]["text"] == expected
        pieces = []
        with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True},
                          timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    pieces.extend(c.get("text", "") for c in json.loads(line[6:])["choices"])
        assert "".join(pieces) == expected
