"""Many clients at once: every response complete and exactly the engine's offline greedy
output (no lost, cut or mixed responses), requests batched rather than serialised, clients that
drop mid-stream cancelled in the engine, and a full queue refused with 429 + Retry-After.
These check micro-batching (`scheduling="batch"`, pinned where it matters: on transformers
`auto` picks the engine's running batch, whose own checks are in test_continuous.py). (The
256-client version with throughput figures is benchmarks/serve_load.py.)"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

import unillm
from unillm import SamplingParams as SP

from ..conftest import require_engine
from .conftest import MODEL, metric, prompts, running_server, stream_completion

CLIENTS = 48
TOKENS = 16


@pytest.fixture(scope="module")
def batch_server(hf_generator):
    """Micro-batching, whatever `auto` would pick for the engine."""
    with running_server(hf_generator, max_batch_size=64, scheduling="batch") as live:
        yield live


def _offline(gen, texts, tokens=TOKENS):
    return gen.generate(texts, SP(max_tokens=tokens, temperature=0.0))


async def _many_streams(url: str, bodies: list[dict], timeout: float = 300) -> list[dict]:
    limits = httpx.Limits(max_connections=len(bodies) + 8, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        return await asyncio.wait_for(
            asyncio.gather(*(stream_completion(client, url, b) for b in bodies)), timeout)


def _check_concurrent_streams(live, gen, clients: int = CLIENTS) -> None:
    """`clients` streaming clients at once: each response complete and equal to the engine's
    offline greedy output for its prompt, and the requests batched, not run one by one."""
    texts = prompts(clients)
    expected = _offline(gen, texts)
    assert {e.finish_reason for e in expected} == {"stop", "length"}, "want both endings"
    batches_before = metric(live.url, "unillm_batch_size_count")
    bodies = [{"model": MODEL, "prompt": t, "max_tokens": TOKENS, "temperature": 0}
              for t in texts]
    results = asyncio.run(_many_streams(f"{live.v1}/completions", bodies))
    assert [r["status"] for r in results] == [200] * clients
    assert all(r["done"] for r in results), "a stream ended without [DONE]"
    for r, want in zip(results, expected):
        assert r["text"] == {0: want.text}
        assert r["finish"] == {0: want.finish_reason}
    batches = metric(live.url, "unillm_batch_size_count") - batches_before
    assert batches <= clients // 4, f"{clients} requests ran in {batches} batches: not batched"
    assert metric(live.url, "unillm_requests_in_flight") == 0


def test_concurrent_streaming_clients_each_get_their_offline_greedy_output(batch_server,
                                                                         hf_generator):
    _check_concurrent_streams(batch_server, hf_generator)


def test_concurrent_chat_and_completion_clients_do_not_mix(server, hf_generator):
    texts = prompts(16)
    expected = _offline(hf_generator, texts)
    conversations = [[{"role": "user", "content": t}] for t in texts]
    expected_chat = hf_generator.chat(conversations, SP(max_tokens=TOKENS, temperature=0.0))
    bodies = [{"model": MODEL, "prompt": t, "max_tokens": TOKENS, "temperature": 0}
              for t in texts]
    chat_bodies = [{"model": MODEL, "messages": m, "max_tokens": TOKENS, "temperature": 0}
                   for m in conversations]

    async def run():
        a = _many_streams(f"{server.v1}/completions", bodies)
        b = _many_streams(f"{server.v1}/chat/completions", chat_bodies)
        return await asyncio.gather(a, b)

    plain, chat = asyncio.run(run())
    assert [r["text"][0] for r in plain] == [e.text for e in expected]
    assert [r["text"][0] for r in chat] == [e.text for e in expected_chat]


async def _drop_mid_stream(port: int, body: dict, after_events: int = 2) -> None:
    """A client that reads a few events, then closes its TCP connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = json.dumps(body).encode()
    writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
                 + payload)
    await writer.drain()
    seen = b""
    while seen.count(b"data: ") < after_events:
        data = await asyncio.wait_for(reader.read(65536), 120)
        assert data, "the server closed the stream first"
        seen += data
    assert b" 200 OK" in seen.split(b"\r\n", 1)[0]
    writer.close()
    await writer.wait_closed()


def _wait_for_metric(url: str, name: str, value: float, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    current = metric(url, name)
    while current != value and time.monotonic() < deadline:
        time.sleep(0.1)
        current = metric(url, name)
    return current


def test_50_clients_dropping_mid_stream_are_cancelled_and_free_their_slots(batch_server,
                                                                         hf_generator):
    server = batch_server
    forward_passes = []
    hook = hf_generator.engine.model_obj.register_forward_hook(
        lambda *a: forward_passes.append(1))
    try:
        body = {"model": MODEL, "max_tokens": 200, "temperature": 0, "ignore_eos": True,
                "stream": True}
        aborted_before = metric(server.url, "unillm_request_finished_total",
                                {"finish_reason": "abort"})

        async def run():
            await asyncio.wait_for(asyncio.gather(*(
                _drop_mid_stream(server.port, {**body, "prompt": p}) for p in prompts(50))), 300)

        asyncio.run(run())
        assert _wait_for_metric(server.url, "unillm_requests_in_flight", 0) == 0
        assert _wait_for_metric(server.url, "unillm_batches_running", 0) == 0
        aborted = metric(server.url, "unillm_request_finished_total",
                         {"finish_reason": "abort"}) - aborted_before
        assert aborted == 50
        # Cancelled in the engine, not just unanswered: running every stream to its 200
        # tokens would take >= 200 forward passes.
        assert len(forward_passes) < 100, f"{len(forward_passes)} forward passes"
    finally:
        hook.remove()
    # the next requests are served normally
    texts = prompts(4)
    expected = _offline(hf_generator, texts)
    results = asyncio.run(_many_streams(f"{server.v1}/completions", [
        {"model": MODEL, "prompt": t, "max_tokens": TOKENS, "temperature": 0} for t in texts]))
    assert [r["text"][0] for r in results] == [e.text for e in expected]
    assert metric(server.url, "unillm_requests_in_flight") == 0


def test_a_non_streaming_client_that_leaves_is_cancelled_too(batch_server, hf_generator):
    server = batch_server
    aborted_before = metric(server.url, "unillm_request_finished_total",
                            {"finish_reason": "abort"})
    forward_passes = []
    hook = hf_generator.engine.model_obj.register_forward_hook(
        lambda *a: forward_passes.append(1))
    try:
        payload = json.dumps({"model": MODEL, "prompt": "leaving", "max_tokens": 2000,
                              "temperature": 0, "ignore_eos": True}).encode()

        async def run():
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                         % len(payload) + payload)
            await writer.drain()
            deadline = time.monotonic() + 60
            while not forward_passes and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            writer.close()
            await writer.wait_closed()

        asyncio.run(run())
        assert _wait_for_metric(server.url, "unillm_requests_in_flight", 0) == 0
        assert _wait_for_metric(server.url, "unillm_batches_running", 0) == 0
        assert len(forward_passes) < 1000, "the generation ran on after its client left"
    finally:
        hook.remove()
    assert metric(server.url, "unillm_request_finished_total",
                  {"finish_reason": "abort"}) - aborted_before == 1


def test_a_full_queue_answers_429_with_retry_after(hf_generator):
    with running_server(hf_generator, max_batch_size=1, max_queue=2, batch_wait=0.0,
                        max_batch_wait=0.0, scheduling="batch") as live:
        long_body = {"model": MODEL, "max_tokens": 2000, "temperature": 0, "ignore_eos": True,
                     "stream": True}

        async def run():
            limits = httpx.Limits(max_connections=16, max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=120, limits=limits) as client:
                running = asyncio.ensure_future(
                    stream_completion(client, f"{live.v1}/completions",
                                      {**long_body, "prompt": "first"}))
                while metric(live.url, "unillm_batches_running") < 1:
                    await asyncio.sleep(0.05)
                queued = [asyncio.ensure_future(stream_completion(
                    client, f"{live.v1}/completions", {**long_body, "prompt": f"q{i}"}))
                    for i in range(2)]
                deadline = time.monotonic() + 60
                while metric(live.url, "unillm_queue_depth") < 2 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                refused = await client.post(f"{live.v1}/completions", json={
                    "model": MODEL, "prompt": "one too many", "max_tokens": 2})
                for task in [running, *queued]:
                    task.cancel()
                await asyncio.gather(running, *queued, return_exceptions=True)
                return refused

        refused = asyncio.run(run())
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "queue_full"
        assert metric(live.url, "unillm_requests_rejected_total") == 1
        assert _wait_for_metric(live.url, "unillm_requests_in_flight", 0) == 0
        assert _wait_for_metric(live.url, "unillm_queue_depth", 0) == 0
        ok = httpx.post(f"{live.v1}/completions", timeout=60,
                        json={"model": MODEL, "prompt": "after", "max_tokens": 2})
        assert ok.status_code == 200


def test_direct_scheduling_gives_the_same_outputs(hf_generator):
    """`direct` is for engines that schedule themselves (vLLM); on transformers it still has to
    be correct, one stream at a time behind the engine's lock."""
    texts = prompts(6)
    expected = _offline(hf_generator, texts, 8)
    with running_server(hf_generator, scheduling="direct") as live:
        results = asyncio.run(_many_streams(f"{live.v1}/completions", [
            {"model": MODEL, "prompt": t, "max_tokens": 8, "temperature": 0} for t in texts]))
        assert [r["text"][0] for r in results] == [e.text for e in expected]
        out = httpx.post(f"{live.v1}/completions", timeout=60, json={
            "model": MODEL, "prompt": texts[0], "max_tokens": 8, "temperature": 0}).json()
        assert out["choices"][0]["text"] == expected[0].text
        assert metric(live.url, "unillm_requests_in_flight") == 0

        body = {"model": MODEL, "max_tokens": 500, "temperature": 0, "ignore_eos": True,
                "stream": True}

        async def drop():
            await asyncio.wait_for(asyncio.gather(*(
                _drop_mid_stream(live.port, {**body, "prompt": p}) for p in texts[:3])), 120)

        asyncio.run(drop())
        assert _wait_for_metric(live.url, "unillm_requests_in_flight", 0) == 0
        assert _wait_for_metric(live.url, "unillm_request_finished_total", 10) == 10
        assert metric(live.url, "unillm_request_finished_total", {"finish_reason": "abort"}) == 3


# -- the same over CTranslate2 (batched streaming through its per-token callback) -------------
@pytest.fixture(scope="module")
def ct2_server(tiny_llama):
    require_engine("ctranslate2")
    gen = unillm.load("ctranslate2", tiny_llama, compute_type="float32")
    try:
        with running_server(gen, max_batch_size=64) as live:
            yield live, gen
    finally:
        gen.close()


def test_concurrent_streaming_clients_on_ctranslate2_each_get_their_offline_greedy_output(
        ct2_server):
    live, gen = ct2_server
    assert gen.batches_streams
    _check_concurrent_streams(live, gen)


class _RowLengths:
    """Stands in front of CTranslate2's generator and keeps each call's generated lengths."""

    def __init__(self, real):
        self.real = real
        self.lengths: list[int] = []

    def generate_batch(self, *args, **kwargs):
        out = self.real.generate_batch(*args, **kwargs)
        self.lengths.extend(len(r.sequences_ids[0]) for r in out)
        return out

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_ctranslate2_clients_dropping_mid_stream_are_cancelled_in_the_engine(ct2_server):
    live, gen = ct2_server
    engine = gen.engine
    real = engine._main()
    engine._generator = recording = _RowLengths(real)
    try:
        body = {"model": MODEL, "max_tokens": 1000, "temperature": 0, "ignore_eos": True,
                "stream": True}
        aborted_before = metric(live.url, "unillm_request_finished_total",
                                {"finish_reason": "abort"})

        async def run():
            await asyncio.wait_for(asyncio.gather(*(
                _drop_mid_stream(live.port, {**body, "prompt": p}) for p in prompts(16))), 300)

        asyncio.run(run())
        assert _wait_for_metric(live.url, "unillm_requests_in_flight", 0) == 0
        assert _wait_for_metric(live.url, "unillm_batches_running", 0) == 0
        assert metric(live.url, "unillm_request_finished_total",
                      {"finish_reason": "abort"}) - aborted_before == 16
        assert len(recording.lengths) == 16
        assert max(recording.lengths) < 500, "CTranslate2 kept generating for clients that left"
    finally:
        engine._generator = real
    _check_concurrent_streams(live, gen, clients=8)
