"""`unillm serve` over an engine's running batch (continuous batching, serve/running.py), the
default for transformers and llama.cpp: requests join the running batch as they arrive and
leave it when they end or their client goes; whatever the batch cannot take runs in static
batches and is counted. Outputs are checked against the library's own greedy output; nothing
here asserts on timings (benchmarks/serve_vllm_client.py measures)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

import unillm
from unillm import SamplingParams as SP
from unillm.serve.running import ContinuousScheduler

from ..conftest import require_engine
from .conftest import MODEL, metric, prompts, running_server, stream_completion
from .test_load import _drop_mid_stream, _many_streams, _wait_for_metric

TOKENS = 16


@pytest.fixture(scope="module")
def live(hf_generator):
    with running_server(hf_generator) as server:  # scheduling="auto"
        yield server


def _greedy(gen, texts, tokens=TOKENS):
    return gen.generate(texts, SP(max_tokens=tokens, temperature=0.0))


def _forward_passes(gen) -> tuple[list, object]:
    passes: list = []
    return passes, gen.engine.model_obj.register_forward_hook(lambda *a: passes.append(1))


def test_auto_scheduling_picks_the_running_batch(live):
    assert isinstance(live.app.state.server.scheduler, ContinuousScheduler)


def test_concurrent_clients_share_the_running_batch_and_get_their_greedy_output(live,
                                                                               hf_generator):
    texts = prompts(48)
    expected = _greedy(hf_generator, texts)
    assert {e.finish_reason for e in expected} == {"stop", "length"}, "want both endings"
    static_before = metric(live.url, "unillm_static_path_requests_total")
    passes, hook = _forward_passes(hf_generator)
    try:
        results = asyncio.run(_many_streams(f"{live.v1}/completions", [
            {"model": MODEL, "prompt": t, "max_tokens": TOKENS, "temperature": 0}
            for t in texts]))
    finally:
        hook.remove()
    assert [r["status"] for r in results] == [200] * len(texts)
    assert all(r["done"] for r in results)
    for r, want in zip(results, expected):
        assert r["text"] == {0: want.text}
        assert r["finish"] == {0: want.finish_reason}
    # one forward pass per step of the whole batch, not per request (48 x 16 serialised)
    assert len(passes) < 48 * TOKENS // 4, f"{len(passes)} forward passes"
    assert metric(live.url, "unillm_static_path_requests_total") == static_before
    assert _wait_for_metric(live.url, "unillm_running_batch_requests", 0) == 0
    assert metric(live.url, "unillm_requests_in_flight") == 0


def test_a_request_joins_a_running_batch_and_leaves_before_it_ends(live, hf_generator):
    """A short request that arrives while a long one runs starts at the next step and ends
    while the long one goes on (with a static batch it would wait for the long one)."""
    short_text = "a short one"
    (expected,) = _greedy(hf_generator, [short_text], 4)
    long_body = {"model": MODEL, "prompt": "a long one", "max_tokens": 1500,
                 "temperature": 0, "ignore_eos": True, "stream": True}
    progress = {"chunks": 0, "done": False}

    async def run():
        async with httpx.AsyncClient(timeout=120) as client:
            async def long_stream():
                async with client.stream("POST", f"{live.v1}/completions", json=long_body) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: {"):
                            progress["chunks"] += 1
                    progress["done"] = True

            task = asyncio.ensure_future(long_stream())
            while progress["chunks"] < 3:
                await asyncio.sleep(0.01)
            short = await client.post(f"{live.v1}/completions", json={
                "model": MODEL, "prompt": short_text, "max_tokens": 4, "temperature": 0})
            still_running = not progress["done"]
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return short, still_running

    short, still_running = asyncio.run(run())
    assert short.status_code == 200
    assert short.json()["choices"][0]["text"] == expected.text
    assert still_running, "the long request ended before the short one"
    assert _wait_for_metric(live.url, "unillm_requests_in_flight", 0) == 0
    assert _wait_for_metric(live.url, "unillm_running_batch_requests", 0) == 0


def test_clients_dropping_mid_stream_leave_the_running_batch(live, hf_generator):
    body = {"model": MODEL, "max_tokens": 200, "temperature": 0, "ignore_eos": True,
            "stream": True}
    aborted_before = metric(live.url, "unillm_request_finished_total",
                            {"finish_reason": "abort"})
    passes, hook = _forward_passes(hf_generator)
    try:
        async def run():
            await asyncio.wait_for(asyncio.gather(*(
                _drop_mid_stream(live.port, {**body, "prompt": p}) for p in prompts(30))), 300)

        asyncio.run(run())
        assert _wait_for_metric(live.url, "unillm_requests_in_flight", 0) == 0
        assert _wait_for_metric(live.url, "unillm_running_batch_requests", 0) == 0
        aborted = metric(live.url, "unillm_request_finished_total",
                         {"finish_reason": "abort"}) - aborted_before
        assert aborted == 30
        # cancelled in the engine: running them to their 200 tokens takes >= 200 passes
        assert len(passes) < 120, f"{len(passes)} forward passes"
    finally:
        hook.remove()
    texts = prompts(3)
    expected = _greedy(hf_generator, texts)
    results = asyncio.run(_many_streams(f"{live.v1}/completions", [
        {"model": MODEL, "prompt": t, "max_tokens": TOKENS, "temperature": 0} for t in texts]))
    assert [r["text"][0] for r in results] == [e.text for e in expected]


def test_what_the_running_batch_cannot_take_runs_statically_and_is_counted(live, hf_generator):
    """logprobs and penalties are not per-request parameters of transformers' continuous
    batching: those requests run in static batches, with the library's results, and
    /metrics counts them by parameter. Sampling parameters it does vary stay in the batch."""
    def counted(reason):
        return metric(live.url, "unillm_static_path_requests_total", {"reason": reason})

    before = {r: counted(r) for r in ("logprobs", "presence_penalty")}
    with_lp = {"model": MODEL, "prompt": "def f(x):", "max_tokens": 6, "temperature": 0,
               "logprobs": 2}
    r = httpx.post(f"{live.v1}/completions", json=with_lp, timeout=60)
    assert r.status_code == 200
    want = hf_generator.generate("def f(x):", SP(max_tokens=6, temperature=0.0, logprobs=2))
    assert r.json()["choices"][0]["text"] == want.text
    assert r.json()["choices"][0]["logprobs"]["token_logprobs"] == pytest.approx(
        [lp.logprob for lp in want.logprobs], abs=1e-4)
    penalised = {"model": MODEL, "prompt": "x", "max_tokens": 6, "temperature": 0,
                 "presence_penalty": 1.0}
    assert httpx.post(f"{live.v1}/completions", json=penalised, timeout=60).status_code == 200
    sampled = {"model": MODEL, "prompt": "x", "max_tokens": 6, "temperature": 0.7,
               "top_p": 0.9, "top_k": 5}
    total_before = metric(live.url, "unillm_static_path_requests_total")
    assert httpx.post(f"{live.v1}/completions", json=sampled, timeout=60).status_code == 200
    assert counted("logprobs") == before["logprobs"] + 1
    assert counted("presence_penalty") == before["presence_penalty"] + 1
    assert metric(live.url, "unillm_static_path_requests_total") == total_before


def test_a_cancelled_request_frees_its_slot_for_a_waiting_one(tiny_llama):
    """Two slots (max_batch_size=2), two long streams, then a short one, which waits: when a
    long client leaves, the short one takes its slot and ends while the other still runs."""
    require_engine("transformers")
    gen = unillm.load("transformers", tiny_llama, dtype="float32", max_batch_size=2)
    try:
        with running_server(gen) as server:
            chunks = {0: 0, 1: 0, 2: 0}
            done = {0: False, 1: False, 2: False}

            async def stream(client, k, body):
                async with client.stream("POST", f"{server.v1}/completions",
                                         json={**body, "stream": True}) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: {"):
                            chunks[k] += 1
                done[k] = True

            async def run():
                long_body = {"model": MODEL, "max_tokens": 1500, "temperature": 0,
                             "ignore_eos": True}
                async with httpx.AsyncClient(timeout=120) as client:
                    longs = [asyncio.ensure_future(stream(client, k, {**long_body,
                                                                    "prompt": f"long {k}"}))
                             for k in (0, 1)]
                    while min(chunks[0], chunks[1]) < 2:
                        await asyncio.sleep(0.01)
                    short = asyncio.ensure_future(stream(client, 2, {
                        "model": MODEL, "prompt": "short", "max_tokens": 4, "temperature": 0}))
                    start = chunks[1]
                    while chunks[1] < start + 20:  # the batch is full: the short one waits
                        await asyncio.sleep(0.01)
                    waited = chunks[2]
                    longs[0].cancel()  # the first long client leaves
                    await asyncio.gather(longs[0], return_exceptions=True)
                    await asyncio.wait_for(short, 120)
                    other_still_running = not done[1]
                    longs[1].cancel()
                    await asyncio.gather(longs[1], return_exceptions=True)
                    return waited, other_still_running

            waited, other_still_running = asyncio.run(run())
            assert waited == 0, "the short request ran while both slots were taken"
            assert done[2] and chunks[2] >= 1
            assert other_still_running
            assert _wait_for_metric(server.url, "unillm_running_batch_requests", 0) == 0
    finally:
        gen.close()


def test_a_full_running_batch_answers_429(hf_generator):
    """Admission is bounded (max_batch_size running + max_queue waiting in the engine)."""
    with running_server(hf_generator, max_batch_size=1, max_queue=1) as server:
        body = {"model": MODEL, "max_tokens": 1500, "temperature": 0, "ignore_eos": True}

        async def run():
            limits = httpx.Limits(max_connections=8, max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=120, limits=limits) as client:
                held = [asyncio.ensure_future(stream_completion(
                    client, f"{server.v1}/completions", {**body, "prompt": f"p{k}"}))
                    for k in range(2)]
                while metric(server.url, "unillm_running_batch_requests") < 2:
                    await asyncio.sleep(0.02)
                refused = await client.post(f"{server.v1}/completions", json={
                    "model": MODEL, "prompt": "one too many", "max_tokens": 2})
                for task in held:
                    task.cancel()
                await asyncio.gather(*held, return_exceptions=True)
                return refused

        refused = asyncio.run(run())
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "queue_full"
        assert _wait_for_metric(server.url, "unillm_running_batch_requests", 0) == 0


def test_llamacpp_clients_share_one_decode_batch_and_get_their_greedy_output(tiny_llama):
    require_engine("llamacpp")
    gen = unillm.load("llamacpp", tiny_llama, quantization="f32", kv_cache_type="f32",
                      parallel=8)
    try:
        texts = prompts(20)
        expected = _greedy(gen, texts)
        with running_server(gen) as server:
            assert isinstance(server.app.state.server.scheduler, ContinuousScheduler)
            results = asyncio.run(_many_streams(f"{server.v1}/completions", [
                {"model": MODEL, "prompt": t, "max_tokens": TOKENS, "temperature": 0}
                for t in texts]))
            chat = httpx.post(f"{server.v1}/chat/completions", timeout=60, json={
                "model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 8, "temperature": 0}).json()
            assert metric(server.url, "unillm_static_path_requests_total") == 0
        assert [r["text"][0] for r in results] == [e.text for e in expected]
        want_chat = gen.chat([{"role": "user", "content": "hi"}], SP(max_tokens=8,
                                                                     temperature=0.0))
        assert chat["choices"][0]["message"]["content"] == want_chat.text
        assert json.dumps(results)  # plain data
    finally:
        gen.close()


def test_llamacpp_usage_counts_the_prompt_tokens_taken_from_its_prompt_cache(tiny_llama):
    """The same chat twice: the second reads only the last prompt token, and its `usage`
    says so as OpenAI does (`prompt_tokens_details.cached_tokens`), streamed or not; the
    `openai` client reads it."""
    require_engine("llamacpp")
    import openai

    gen = unillm.load("llamacpp", tiny_llama, quantization="f32", kv_cache_type="f32",
                      parallel=2)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Bonjour, ça va ?"}],
            "max_tokens": 4, "temperature": 0}
    try:
        with running_server(gen) as server:
            first = httpx.post(f"{server.v1}/chat/completions", json=body, timeout=60).json()
            client = openai.OpenAI(base_url=server.v1, api_key="x")
            second = client.chat.completions.create(**body).usage
            stream = client.chat.completions.create(
                **body, stream=True, stream_options={"include_usage": True})
            streamed = [c.usage for c in stream if c.usage is not None]
    finally:
        gen.close()
    n = first["usage"]["prompt_tokens"]
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] <= 1  # a start token
    assert second.prompt_tokens == n and second.prompt_tokens_details.cached_tokens == n - 1
    assert [u.prompt_tokens_details.cached_tokens for u in streamed] == [n - 1]


def test_vllm_engine_serves_through_its_running_batch_with_a_stand_in_for_vllms_engine(
        tiny_llama):
    """`auto` picks the running batch for unillm's vLLM engine too (its steps handed to the
    loop whole, instead of one hand-over per request per token). vLLM itself needs AVX-512
    here, so unillm's vLLM engine runs over tests/servers/vllm_standin.py's stand-in."""
    from ..servers.vllm_standin import standin_engine

    gen = unillm.Generator(standin_engine(tiny_llama, 0.002, 256), engine_name="vllm",
                           model=tiny_llama)
    try:
        texts = prompts(24)
        expected = gen.generate(texts, SP(max_tokens=TOKENS, temperature=0.0))
        with running_server(gen) as server:
            assert isinstance(server.app.state.server.scheduler, ContinuousScheduler)
            results = asyncio.run(_many_streams(f"{server.v1}/completions", [
                {"model": MODEL, "prompt": t, "max_tokens": TOKENS, "temperature": 0}
                for t in texts]))
            assert _wait_for_metric(server.url, "unillm_running_batch_requests", 0) == 0
        assert [r["text"][0] for r in results] == [e.text for e in expected]
        assert all(r["done"] for r in results)
    finally:
        gen.close()
