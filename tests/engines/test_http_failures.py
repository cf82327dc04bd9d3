"""Failures of HTTP engines: retries with backoff, errors that are not retried, timeouts, and
servers that break a stream. The misbehaviour comes from a proxy (tests/servers/faults.py) in
front of a real server (llama-cpp-python's, or the TGI-protocol stand-in): every answer it does
not break is the real server's."""

from __future__ import annotations

import asyncio

import pytest

import unillm
from unillm import SamplingParams as SP

from ..conftest import require_engine
from ..servers import free_port, serve_in_thread
from ..servers.faults import FaultProxy

LONG = SP(max_tokens=40, temperature=0.0, ignore_eos=True)
FAST_RETRIES = {"backoff": 0.01, "max_backoff": 0.05, "probe": False}


@pytest.fixture(scope="module")
def llama(llama_cpp_server, tiny_llama):
    require_engine("openai")
    return llama_cpp_server(tiny_llama)


@pytest.fixture
def proxy(llama):
    name, options = llama
    faults = FaultProxy(target=options["base_url"].removesuffix("/v1"))
    with serve_in_thread(faults.app(), "/__proxy_health") as base:
        faults.base = base
        yield faults


def through(proxy, llama, **options):
    name, server_options = llama
    merged = {**server_options, **FAST_RETRIES, "base_url": proxy.base + "/v1", **options}
    return unillm.load("openai", name, **merged)


def posts(proxy) -> int:
    return sum(1 for s in proxy.seen if s.startswith("POST"))


# -- retries ------------------------------------------------------------------------------------
def test_429_and_503_are_retried_with_backoff_until_the_server_answers(proxy, llama):
    name, options = llama
    with unillm.load("openai", name, **options) as direct:
        expected = direct.generate("The quick brown fox", LONG).text
    with through(proxy, llama) as gen:
        proxy.fail_next = [429, 503]
        assert gen.generate("The quick brown fox", LONG).text == expected
        assert posts(proxy) == 3
        proxy.fail_next = [429]  # a stream is retried too, before its first event
        assert "".join(c.text for c in gen.stream("The quick brown fox", LONG)) == expected
        assert posts(proxy) == 5


def test_retries_stop_after_max_retries_with_the_servers_status(proxy, llama):
    with through(proxy, llama, max_retries=2) as gen:
        proxy.fail_next = [503] * 10
        with pytest.raises(unillm.EngineError, match="HTTP 503") as info:
            gen.generate("x", SP(max_tokens=4))
        assert "fault proxy" in str(info.value)  # the server's own message is passed on
        assert posts(proxy) == 3


def test_a_request_the_server_rejects_is_not_retried(proxy, llama):
    with through(proxy, llama) as gen:
        proxy.fail_next = [400, 429]
        with pytest.raises(unillm.EngineError, match="HTTP 400"):
            gen.generate("x", SP(max_tokens=4))
        assert posts(proxy) == 1


def test_no_server_listening_is_a_clear_error():
    require_engine("openai")
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(unillm.EngineError, match="cannot connect") as info:
        unillm.load("openai", "m", base_url=url, max_retries=1, backoff=0.01)
    assert url in str(info.value)


def test_the_api_key_is_sent_and_never_shown(proxy, llama):
    with through(proxy, llama, api_key="sekret-123", probe=True) as gen:
        gen.generate("x", SP(max_tokens=2))
        assert set(proxy.authorization) == {"Bearer sekret-123"}  # the probe and the request
        assert "sekret-123" not in repr(gen.info)


# -- broken streams -------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_connection_dropped_mid_stream_is_an_error_not_a_hang(proxy, llama):
    with through(proxy, llama) as gen:
        proxy.drop_after_events = 3
        received = []
        with pytest.raises(unillm.EngineError, match="closed the stream"):
            for chunk in gen.stream("The quick brown fox", LONG):
                received.append(chunk.text)
        assert 1 <= len(received) <= 3  # what came before the break was delivered, not retried
        assert posts(proxy) == 1
        # a batch call that streams internally (unillm matching the stop strings) fails too
        with pytest.raises(unillm.EngineError, match="closed the stream"):
            gen.generate("The quick brown fox", LONG.replace(stop=["never in the text"]))

        async def consume():
            return [c.text async for c in gen.astream("The quick brown fox", LONG)]

        with pytest.raises(unillm.EngineError, match="closed the stream"):
            asyncio.run(consume())
        proxy.drop_after_events = None  # the engine is still usable
        assert gen.generate("x", SP(max_tokens=4, temperature=0.0)).text


@pytest.mark.timeout(60)
def test_a_stalled_stream_times_out(proxy, llama):
    with through(proxy, llama, timeout=1.0) as gen:
        proxy.stall_after_events = 2
        with pytest.raises(unillm.EngineError, match="sent nothing for 1 s"):
            "".join(c.text for c in gen.stream("The quick brown fox", LONG))


def test_a_stream_that_ends_without_a_finish_reason_is_incomplete(proxy, llama):
    with through(proxy, llama) as gen:
        proxy.end_after_events = 2
        with pytest.raises(unillm.EngineError, match="without a finish_reason"):
            "".join(c.text for c in gen.stream("The quick brown fox", LONG))


# -- TGI --------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_tgi_against_tgi_protocol_standin_server_dropped_stream_is_an_error(tgi_standin):
    require_engine("tgi")
    faults = FaultProxy(target=tgi_standin)
    with serve_in_thread(faults.app(), "/__proxy_health") as base:
        with unillm.load("tgi", base_url=base, **FAST_RETRIES) as gen:
            faults.fail_next = [429]
            assert gen.generate("x", SP(max_tokens=4, temperature=0.0)).timing.output_tokens >= 1
            tgi_long = SP(max_tokens=40, temperature=0.0)  # TGI has no ignore_eos
            faults.drop_after_events = 2
            with pytest.raises(unillm.EngineError, match="closed the stream"):
                "".join(c.text for c in gen.stream("The quick brown fox", tgi_long))
            faults.drop_after_events = None
            faults.end_after_events = 2
            with pytest.raises(unillm.EngineError, match="before its final event"):
                "".join(c.text for c in gen.stream("The quick brown fox", tgi_long))


def test_tgi_against_tgi_protocol_standin_server_validation_errors_pass_through(tgi_standin):
    require_engine("tgi")
    with unillm.load("tgi", base_url=tgi_standin,
                     extra_parameters={"grammar": {"type": "ebnf", "value": "a"}}) as gen:
        with pytest.raises(unillm.EngineError, match="HTTP 422.*grammar"):
            gen.generate("x", SP(max_tokens=4))


# -- batches ----------------------------------------------------------------------------------
def test_a_failed_request_costs_only_its_own_prompt(proxy, llama):
    with through(proxy, llama, max_concurrency=1, max_retries=0) as gen:
        prompts = ["The quick brown fox", "x", "Hello"]
        expected = [gen.generate(p, SP(max_tokens=8, temperature=0.0)).text for p in prompts]
        proxy.fail_next = [400]  # the first request of the batch is refused
        with pytest.raises(unillm.BatchError) as info:
            gen.generate(prompts, SP(max_tokens=8, temperature=0.0))
        err = info.value
        assert list(err.errors) == [0] and "HTTP 400" in str(err.errors[0])
        assert [c.text if c else None for c in err.completions] == [None, *expected[1:]]

        async def run():
            proxy.fail_next = [400]
            return await gen.agenerate(prompts, SP(max_tokens=8, temperature=0.0))

        with pytest.raises(unillm.BatchError) as info:
            asyncio.run(run())
        assert list(info.value.errors) == [0]


def test_stream_many_streams_server_requests_concurrently(llama):
    name, options = llama
    prompts = ["The quick brown fox", "x", "Hello", "def f():"]
    params = SP(max_tokens=12, temperature=0.0, ignore_eos=True)
    with unillm.load("openai", name, **{**options, "max_concurrency": 4}) as gen:
        expected = [gen.generate(p, params).text for p in prompts]
        texts = {i: "" for i in range(len(prompts))}
        with gen.stream_many(prompts, params) as multi:
            for index, item in multi:
                if isinstance(item, unillm.Chunk):
                    texts[index] += item.text
            assert [c.text for c in multi.completions] == expected
        assert [texts[i] for i in range(len(prompts))] == expected
        with gen.stream_many(prompts, params) as multi:  # cancelling one leaves the others
            for index, item in multi:
                if index == 0 and isinstance(item, unillm.Chunk):
                    multi.cancel(0)
            assert multi.completions[0].finish_reason == "abort"
            assert [c.text for c in multi.completions[1:]] == expected[1:]
