"""Replicas on a local Ray: same results as one engine, and replicas that die mid-run.

Ray runs on this machine's 2 cores with small fractional CPU reservations per replica, so that
the few generators these tests load fit together; Ray is shut down at the end if the tests
started it.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import unillm
from unillm import SamplingParams as SP

from ..conftest import REQUIRED_ENGINES, require_engine

PROMPTS = [
    "The quick brown fox",
    "def fibonacci(n):\n    return",
    "x",
    "Le café est très chaud",
    "import os\nimport sys\n",
    "Once upon a time",
]
REPLICA = {"replicas": 2, "num_cpus": 0.25, "dtype": "float32"}


@pytest.fixture(scope="module")
def ray_session():
    try:
        import ray
    except ImportError:
        if "ray" in REQUIRED_ENGINES:
            pytest.fail("ray is not installed -- but UNILLM_REQUIRE_ENGINES requires it",
                        pytrace=False)
        pytest.skip('ray is not installed (install: pip install "unillm[ray]")')
    require_engine("transformers")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False,
                 log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def replicated(ray_session, tiny_llama):
    gen = unillm.load("transformers", tiny_llama, **REPLICA)
    yield gen
    gen.close()


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def kill_when_busy(ray, gen: unillm.Generator, replica: int) -> threading.Thread:
    """Kill `replica`'s process (Ray restarts it) as soon as it has work in flight."""
    engine = gen.engine

    def kill() -> None:
        wait_until(lambda: engine.balancer.snapshot()["calls"][replica] > 0, 60, "work")
        time.sleep(0.1)  # let it start generating
        ray.kill(engine.actors[replica], no_restart=False)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


# -- same results -------------------------------------------------------------------------
def test_two_replicas_give_the_same_outputs_in_order_as_one_engine(replicated, hf_generator):
    params = [SP(max_tokens=k, temperature=0, ignore_eos=True) for k in (40, 3, 25, 8, 40, 12)]
    out = replicated.generate(PROMPTS, params)
    local = hf_generator.generate(PROMPTS, params)
    assert [o.prompt for o in out] == PROMPTS
    assert [o.token_ids for o in out] == [o.token_ids for o in local]
    assert [o.text for o in out] == [o.text for o in local]
    assert {o.engine_params["replica"] for o in out} == {0, 1}  # both replicas did work
    assert out[0].engine_params["max_new_tokens"] == 40  # what the real engine received

    # Core semantics run as locally: emulated stop strings, seeded n, logprobs.
    stop = local[1].text[1:3] if len(local[1].text) > 3 else local[0].text[5:7]
    special = SP(max_tokens=30, temperature=0.8, seed=5, n=2, stop=[stop], logprobs=2)
    assert ([s.token_ids for s in replicated.generate(PROMPTS[0], special).samples]
            == [s.token_ids for s in hf_generator.generate(PROMPTS[0], special).samples])
    # skip_special_tokens=False: the replica's stop hook and the driver decode alike (nearly
    # uniform sampling: the tiny model then samples some of its special tokens)
    kept = SP(max_tokens=100, temperature=100.0, seed=0, n=4, ignore_eos=True,
              skip_special_tokens=False, stop=["\x00never"])
    texts = [s.text for s in replicated.generate(PROMPTS[0], kept).samples]
    assert texts == [s.text for s in hf_generator.generate(PROMPTS[0], kept).samples]
    assert any(m in t for t in texts for m in ("<s>", "</s>", "<unk>", "<pad>"))


def test_streaming_async_and_timing_through_replicas(replicated, hf_generator):
    params = SP(max_tokens=24, temperature=0, ignore_eos=True)
    expected = hf_generator.generate(PROMPTS, params)
    stream = replicated.stream(PROMPTS[1], params)
    assert "".join(c.text for c in stream) == expected[1].text
    assert stream.completion.timing.source == "stream"
    assert len(stream.completion.timing.token_times) == 24

    async def run():
        batch = await replicated.agenerate(PROMPTS, params)
        streamed = replicated.astream(PROMPTS[2], params)
        return batch, "".join([c.text async for c in streamed])

    batch, text = asyncio.run(run())
    assert [o.token_ids for o in batch] == [o.token_ids for o in expected]
    assert text == expected[2].text

    out = replicated.generate(PROMPTS, params)
    for o in out:  # per-request figures, on the driver's clock
        t = o.timing
        assert t.source == "callback" and t.output_tokens == 24
        assert 0 < t.ttft <= t.e2e <= out.run.wall
    assert out.run.output_tokens == 24 * len(PROMPTS)  # the run, over every replica


def test_closing_a_stream_stops_the_replica(replicated):
    stream = replicated.stream(PROMPTS[0], SP(max_tokens=1500, temperature=0, ignore_eos=True))
    with stream:
        for i, _ in enumerate(stream):
            if i == 3:
                break
    assert stream.completion.finish_reason == "abort"
    # The replica stopped generating: its stream is gone and its work released.
    engine = replicated.engine
    wait_until(lambda: sum(engine.balancer.snapshot()["work"]) == 0, 5, "work released")
    ray = pytest.importorskip("ray")
    wait_until(lambda: sum(ray.get([a.open_streams.remote() for a in engine.actors])) == 0,
               10, "the replica's stream to stop")


def test_a_batch_of_streams_is_spread_over_the_replicas(replicated, hf_generator):
    # Engine.stream_batch is what a server uses to stream many clients at once.
    params = SP(max_tokens=12, temperature=0, ignore_eos=True)
    requests = [unillm.EngineRequest(params=params,
                                     prompt_token_ids=replicated.tokenizer.encode(p))
                for p in PROMPTS[:4]]
    tokens: dict[int, list[int]] = {k: [] for k in range(4)}
    ran_on: dict[int, int] = {}  # request -> the replica its streamed result names
    for k, event in replicated.engine.stream_batch(requests):
        tokens[k].extend(event.token_ids)
        if event.result is not None:
            ran_on[k] = event.result.received["replica"]
    expected = hf_generator.generate(PROMPTS[:4], params)
    assert [tuple(tokens[k]) for k in range(4)] == [e.token_ids for e in expected]
    assert set(ran_on) == {0, 1, 2, 3} and set(ran_on.values()) == {0, 1}


# -- replicas that die ----------------------------------------------------------------------
LONG = SP(max_tokens=500, temperature=0, ignore_eos=True)  # ~1 s per replica here


def test_a_killed_replica_fails_only_its_requests_and_the_generator_keeps_serving(
        ray_session, replicated, hf_generator):
    killer = kill_when_busy(ray_session, replicated, replica=0)
    with pytest.raises(unillm.BatchError) as info:
        replicated.generate(PROMPTS[:4], LONG)
    killer.join()
    err = info.value
    done = {i: c for i, c in enumerate(err.completions) if c is not None}
    assert err.errors and done, "one replica's requests fail, the other's complete"
    assert set(err.errors) | set(done) == set(range(4))
    assert all(c.engine_params["replica"] == 1 for c in done.values())
    for e in err.errors.values():
        assert isinstance(e, unillm.EngineError)
        assert "replica 0 died" in str(e) and "retry=True" in str(e)
    local = hf_generator.generate([PROMPTS[i] for i in done], LONG)
    assert [c.token_ids for c in done.values()] == [c.token_ids for c in local]

    # The next call succeeds right away (on the surviving replica)...
    assert replicated.generate(PROMPTS[:2], SP(max_tokens=4, temperature=0)).run.requests == 2
    # ...and Ray's restart brings the killed replica back into rotation.
    engine = replicated.engine
    wait_until(lambda: engine.balancer.snapshot()["up"][0], 180, "replica 0's restart")
    out = replicated.generate(PROMPTS, SP(max_tokens=4, temperature=0))
    assert {o.engine_params["replica"] for o in out} == {0, 1}


def test_with_retry_a_killed_replica_s_requests_complete_elsewhere(
        ray_session, tiny_llama, hf_generator):
    with unillm.load("transformers", tiny_llama, retry=True, **REPLICA) as gen:
        killer = kill_when_busy(ray_session, gen, replica=1)
        out = asyncio.run(gen.agenerate(PROMPTS[:4], LONG))  # the async path, this time
        killer.join()
        assert [o.prompt for o in out] == PROMPTS[:4]
        assert all(o.engine_params["replica"] == 0 for o in out)  # all finished on replica 0
        local = hf_generator.generate(PROMPTS[:4], LONG)
        assert [o.token_ids for o in out] == [o.token_ids for o in local]


def test_a_stream_whose_replica_dies_fails_clearly_and_the_next_one_works(
        ray_session, replicated):
    engine = replicated.engine
    wait_until(lambda: all(engine.balancer.snapshot()["up"]), 180, "every replica up")
    stream = replicated.stream(PROMPTS[0], LONG)
    next(stream)
    replica = engine.balancer.snapshot()["calls"].index(1)
    ray_session.kill(engine.actors[replica], no_restart=False)
    with pytest.raises(unillm.EngineError, match=f"replica {replica} died.*first token"):
        for _ in stream:
            pass
    assert replicated.stream(PROMPTS[1], SP(max_tokens=5, temperature=0)).text != ""


# -- arguments ------------------------------------------------------------------------------
def test_bad_arguments_fail_before_any_replica_starts(tiny_llama):
    with pytest.raises(unillm.UnknownParameterError, match="dtpye"):
        unillm.load("transformers", tiny_llama, replicas=2, dtpye="float32")
    with pytest.raises(unillm.InvalidParameterError, match="replicas"):
        unillm.load("transformers", tiny_llama, replicas=0)
    with pytest.raises(unillm.InvalidParameterError, match="num_gpus.*replicas=N"):
        unillm.load("transformers", tiny_llama, num_gpus=1)
    with pytest.raises(unillm.EngineNotFoundError):
        unillm.load("no-such-engine", tiny_llama, replicas=2)


def test_a_replica_that_cannot_load_raises_the_engine_s_own_error(ray_session, tmp_path):
    # The replica's own message arrives whole: the path it refused and why.
    with pytest.raises(unillm.EngineError, match="no-model does not"):
        unillm.load("transformers", str(tmp_path / "no-model"), replicas=1, num_cpus=0.25)
