"""The engines' running batches (continuous batching) through the library: `stream_many` runs
its prompts there when the batch takes all of them. What must hold: greedy tokens equal the
static path's (`generate`), whatever else runs in the batch; per-request parameters honoured;
what the batch cannot honour refused by name and run on the static path; a cancelled prompt
leaving the batch while the others go on.

transformers: its continuous-batching manager (unillm/backends/hf_continuous.py); llama.cpp:
several sequences in one `llama_decode` batch (unillm_llamacpp/batching.py).
"""

from __future__ import annotations

import pytest

import unillm
from unillm import SamplingParams as SP
from unillm.testing import build_test_model

from ..conftest import require_engine

PROMPTS = ["def fibonacci(n):", "The quick brown fox", "x", "import os\nimport sys\n",
           "Hello, world! Bonjour, le monde ! 東京は日本の首都です。", "class Stack:\n    def push(self, item):",
           "SELECT * FROM users WHERE", "for i in range(10):"]


def _stream_many(gen, prompts, params):
    texts: dict[int, str] = {}
    completions: dict[int, unillm.Completion] = {}
    for index, item in gen.stream_many(prompts, params):
        assert index not in completions, "an item came after that prompt's Completion"
        if isinstance(item, unillm.Completion):
            completions[index] = item
        else:
            texts[index] = texts.get(index, "") + item.text
    return texts, [completions[i] for i in range(len(prompts))]


def _ran_in_the_running_batch(completion: unillm.Completion, engine: str) -> bool:
    key = "continuous_batching" if engine == "transformers" else "parallel"
    return key in completion.engine_params


@pytest.fixture(scope="module", params=["llama-tiny", "gpt2-tiny"])
def hf(request):
    require_engine("transformers")
    gen = unillm.load("transformers", str(build_test_model(request.param)), dtype="float32")
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def llamacpp():
    require_engine("llamacpp")
    gen = unillm.load("llamacpp", str(build_test_model("llama-tiny")), quantization="f32",
                      kv_cache_type="f32", parallel=3)
    yield gen
    gen.close()


@pytest.fixture(params=["transformers", "llamacpp"])
def gen(request, hf, llamacpp):
    return hf if request.param == "transformers" else llamacpp


def test_greedy_tokens_equal_the_static_path_whatever_the_batch_holds(gen):
    """Prompts of every length, per-prompt max_tokens, rows ending at eos while others go on,
    a stop string (the core's) and a stop token: the same tokens, text and finish reasons as
    `generate`, one prompt at a time or in static batches."""
    base = gen.generate(PROMPTS, SP(max_tokens=40, temperature=0.0))
    stop_text = base[0].text[5:9] or "e"
    stop_id = base[1].token_ids[6]
    params = [SP(max_tokens=40 - 3 * i, temperature=0.0) for i in range(len(PROMPTS))]
    params[0] = params[0].replace(stop=[stop_text])
    params[1] = params[1].replace(stop_token_ids=[stop_id])
    params[2] = params[2].replace(ignore_eos=True, max_tokens=50)
    expected = gen.generate(PROMPTS, params)
    # What a stream of the prompt alone sends (a native stop token's text is streamed before
    # the engine says it stopped, on every path: the streamed text is compared with that).
    streamed = ["".join(c.text for c in gen.stream(p, sp)) for p, sp in zip(PROMPTS, params)]
    texts, got = _stream_many(gen, PROMPTS, params)
    engine = gen.engine_name
    for index, (want, have) in enumerate(zip(expected, got)):
        assert _ran_in_the_running_batch(have, engine), have.engine_params
        assert have.token_ids == want.token_ids, f"prompt {index}"
        assert have.text == want.text
        assert texts.get(index, "") == streamed[index]
        assert have.finish_reason == want.finish_reason
        assert have.samples[0].stop_reason == want.samples[0].stop_reason
    assert got[0].samples[0].stop_reason == stop_text
    assert got[1].finish_reason == "stop" and got[1].samples[0].stop_reason == stop_id
    assert len(got[2].token_ids) == 50


def test_a_prompt_longer_than_one_step_is_read_over_several(gen):
    """~1,000 prompt tokens: more than one step takes (512), so the prompt is read over several
    steps while the other prompts decode; still the static path's tokens."""
    long = "def f(x):\n    return x * 2\n" * 90
    assert len(gen.tokenizer.encode(long)) > 600
    prompts = [long, PROMPTS[0], long[:900]]
    params = SP(max_tokens=20, temperature=0.0, ignore_eos=True)
    expected = gen.generate(prompts, params)
    _, got = _stream_many(gen, prompts, params)
    assert all(_ran_in_the_running_batch(c, gen.engine_name) for c in got)
    assert [c.token_ids for c in got] == [c.token_ids for c in expected]


def _counting_sinks(running) -> tuple[list[int], object]:
    """Wrap `running.add` so that each sink call's event count is recorded (one wrapper per
    sink, as the engine groups a step's events by sink); returns (counts, the original)."""
    counts: list[int] = []
    original = running.add
    wrapped: dict[int, object] = {}

    def counting_add(request, sink):
        def counted(events):
            counts.append(len(events))
            sink(events)
        original(request, wrapped.setdefault(id(sink), counted))

    running.add = counting_add
    return counts, original


def test_a_step_is_handed_over_whole(gen):
    """All the prompts' events of one step reach the consumer in one call (one wake-up of a
    server's event loop per step, not one per request)."""
    running = gen.running_batch()
    counts, original = _counting_sinks(running)
    try:
        _, got = _stream_many(gen, PROMPTS[:3], SP(max_tokens=8, temperature=0.0,
                                                   ignore_eos=True))
    finally:
        running.add = original
    assert all(len(c.token_ids) == 8 for c in got)
    assert max(counts) == 3 and sum(counts) >= 3 * 8


def test_more_prompts_than_the_batch_runs_at_once_wait_for_a_slot(llamacpp):
    """parallel=3 sequences, 8 prompts: the others join as sequences free up."""
    params = SP(max_tokens=12, temperature=0.0, ignore_eos=True)
    expected = llamacpp.generate(PROMPTS, params)
    _, got = _stream_many(llamacpp, PROMPTS, params)
    assert [c.token_ids for c in got] == [c.token_ids for c in expected]


class _RecordingLib:
    """llama.cpp's library as the running batch sees it, recording each `llama_decode` batch
    as its tokens' sequence ids; the call of step `hold_at` waits for `release` (so that a
    request added meanwhile joins at the next step, however busy the machine)."""

    def __init__(self, lib, hold_at, release):
        import threading

        self.lib, self.steps, self.hold_at, self.release = lib, [], hold_at, release
        self.reached = threading.Event()  # set while step `hold_at` waits

    def __getattr__(self, name):
        return getattr(self.lib, name)

    def llama_decode(self, ctx, batch):
        self.steps.append({batch.seq_id[i][0] for i in range(batch.n_tokens)})
        if len(self.steps) == self.hold_at:
            self.reached.set()
            assert self.release.wait(60), "the step was never released"
        return self.lib.llama_decode(ctx, batch)


def _signalling_adds(running, count):
    """Wrap `running.add`: the event returned is set once `count` requests were added (the
    original `add` comes with it, to put back)."""
    import threading

    added, adds, original = threading.Event(), [], running.add

    def add(request, sink):
        original(request, sink)
        adds.append(request)
        if len(adds) == count:
            added.set()

    running.add = add
    return added, original


def test_a_prompt_arriving_while_others_decode_is_read_in_a_step_of_its_own(tiny_llama):
    """llama.cpp: a request that joins while another decodes gets its first token from a
    step that reads prompts only (not after a step that also decodes every running
    sequence); the running one decodes at the next step, and both keep the static tokens."""
    require_engine("llamacpp")
    import threading

    gen = unillm.load("llamacpp", tiny_llama, quantization="f32", kv_cache_type="f32",
                      parallel=2)
    try:
        long = SP(max_tokens=40, temperature=0.0, ignore_eos=True)
        params = long.replace(max_tokens=20)
        expected = gen.generate(PROMPTS[:2], [long, params])
        running = gen.running_batch()
        added, original_add = _signalling_adds(running, 2)
        # Step 1 reads the first prompt; step 5 (the first one decodes) waits for the second.
        running.lib = recording = _RecordingLib(running.lib, hold_at=5, release=added)
        second: list = []

        def run_second():
            second.extend(_stream_many(gen, PROMPTS[1:2], params)[1])

        thread = threading.Thread(target=run_second)
        first = []
        for _, item in gen.stream_many(PROMPTS[:1], long):
            first.append(item)
            if len(first) == 1:
                thread.start()
        thread.join(60)
        running.lib, running.add = recording.lib, original_add
    finally:
        gen.close()
    assert first[-1].token_ids == expected[0].token_ids
    assert second[0].token_ids == expected[1].token_ids
    ids = recording.steps
    (a,) = ids[0]
    joins = next(i for i, step in enumerate(ids) if step - {a})
    assert ids[joins - 1] == {a}, "the second prompt did not join while the first decoded"
    assert a not in ids[joins], "the joining prompt shared its step with a decoding sequence"
    assert a in ids[joins + 1]


def test_sequences_that_end_early_leave_no_gap_and_the_moved_ones_keep_their_tokens(
        tiny_llama):
    """llama.cpp: when a sequence ends, the one with the highest id moves into its place (its
    KV cells copied), so every step holds consecutive sequence ids (llama.cpp cuts a batch at
    every gap); the moved sequences' tokens equal the static path's."""
    require_engine("llamacpp")
    gen = unillm.load("llamacpp", tiny_llama, quantization="f32", kv_cache_type="f32",
                      parallel=6)
    try:
        params = [SP(max_tokens=n, temperature=0.0, ignore_eos=True)
                  for n in (3, 30, 6, 25, 9, 30)]
        expected = gen.generate(PROMPTS[:6], params)
        running = gen.running_batch()
        running.lib = recording = _RecordingLib(running.lib, hold_at=None, release=None)
        _, got = _stream_many(gen, PROMPTS[:6], params)
        running.lib = recording.lib
        # again: now from the cells that ended and moved sequences left (the prompt cache)
        _, again = _stream_many(gen, PROMPTS[:6], params)
    finally:
        gen.close()
    assert [c.token_ids for c in got] == [c.token_ids for c in expected]
    steps = recording.steps
    assert any(len(step) < 6 for step in steps), "no sequence ended before the others"
    assert all(step == set(range(len(step))) for step in steps), steps
    assert [c.token_ids for c in again] == [c.token_ids for c in expected]
    assert sum(c.engine_params["prompt_cache_tokens"] for c in again) > 0


def test_a_cancellation_and_an_admission_at_once_keep_the_ids_consecutive(tiny_llama):
    """llama.cpp: a request cancelled while another waits for a sequence frees its id
    before the waiting one takes the lowest free id, so no step holds a gap."""
    require_engine("llamacpp")
    import threading

    gen = unillm.load("llamacpp", tiny_llama, quantization="f32", kv_cache_type="f32",
                      parallel=4)
    try:
        long = SP(max_tokens=30, temperature=0.0, ignore_eos=True)
        short = long.replace(max_tokens=10)
        expected = gen.generate(PROMPTS[:4], [long, long, long, short])
        running = gen.running_batch()
        added, original_add = _signalling_adds(running, 4)
        release = threading.Event()
        running.lib = recording = _RecordingLib(running.lib, hold_at=6, release=release)
        late: list = []
        thread = threading.Thread(
            target=lambda: late.extend(_stream_many(gen, PROMPTS[3:4], short)[1]))
        done = {}
        with gen.stream_many(PROMPTS[:3], long) as multi:
            for index, item in multi:
                if isinstance(item, unillm.Completion):
                    done[index] = item
                elif index == 0 and not thread.is_alive() and not release.is_set():
                    # step 6 waits: cancel the first and add a fourth before it goes on
                    assert recording.reached.wait(60)
                    multi.cancel(0)
                    thread.start()
                    assert added.wait(60)
                    release.set()
        thread.join(60)
        running.lib, running.add = recording.lib, original_add
    finally:
        gen.close()
    assert done[0].finish_reason == "abort"
    assert [done[1].token_ids, done[2].token_ids, late[0].token_ids] == [
        c.token_ids for c in expected[1:]]
    # one run of consecutive ids each (a step reading the late prompt alone holds its id only)
    assert all(max(step) - min(step) + 1 == len(step) for step in recording.steps), \
        recording.steps
    assert {3} not in recording.steps, "the late prompt took id 3, not the one freed"


class _FailingLib:
    """llama.cpp's library whose `llama_decode` fails (returns -1) at call `fail_at`."""

    def __init__(self, lib, fail_at):
        self.lib, self.fail_at, self.calls = lib, fail_at, 0

    def __getattr__(self, name):
        return getattr(self.lib, name)

    def llama_decode(self, ctx, batch):
        self.calls += 1
        return -1 if self.calls == self.fail_at else self.lib.llama_decode(ctx, batch)


def test_a_failed_step_ends_the_running_requests_and_the_next_ones_read_their_prompts(
        tiny_llama):
    """llama.cpp: when `llama_decode` fails, every running request gets the error, and the
    cells it may have left half written are forgotten: the next requests read their prompts
    whole (none from the prompt cache) and get the static path's tokens."""
    require_engine("llamacpp")
    gen = unillm.load("llamacpp", tiny_llama, quantization="f32", kv_cache_type="f32",
                      parallel=3)
    try:
        params = [SP(max_tokens=n, temperature=0.0, ignore_eos=True) for n in (4, 12, 12)]
        expected = gen.generate(PROMPTS[:3], params)
        _stream_many(gen, PROMPTS[:3], params)  # the cache now holds them
        running = gen.running_batch()
        running.lib = failing = _FailingLib(running.lib, fail_at=6)
        with pytest.raises(Exception, match="llama_decode returned -1"):
            _stream_many(gen, PROMPTS[:3], params)
        running.lib = failing.lib
        _, got = _stream_many(gen, PROMPTS[:3], params)
    finally:
        gen.close()
    assert [c.token_ids for c in got] == [c.token_ids for c in expected]
    assert [c.engine_params["prompt_cache_tokens"] for c in got] == [0, 0, 0]


@pytest.mark.parametrize("cache", [True, False])
def test_a_prompt_read_before_is_taken_from_the_cells_it_left(tiny_llama, cache):
    """llama.cpp's prompt cache: the same prompt again reads only its last token (for its
    logits); one that begins with an earlier request's prompt and answer reads only the rest;
    a new prompt reads all of it but the start token they share; the tokens are the static path's either way. With
    `prompt_cache=False` every prompt is read whole."""
    require_engine("llamacpp")
    gen = unillm.load("llamacpp", tiny_llama, quantization="f32", kv_cache_type="f32",
                      parallel=2, prompt_cache=cache)
    try:
        params = SP(max_tokens=8, temperature=0.0, ignore_eos=True)
        first = _stream_many(gen, PROMPTS[3:4], params)[1][0]
        longer = PROMPTS[3] + first.text + " and more"
        prompts = [PROMPTS[3], longer, PROMPTS[6]]
        expected = gen.generate(prompts, params)
        got = [_stream_many(gen, [p], params)[1][0] for p in prompts]
    finally:
        gen.close()
    assert [c.token_ids for c in got] == [c.token_ids for c in expected]
    reused = [c.engine_params["prompt_cache_tokens"] for c in got]
    assert first.engine_params["prompt_cache_tokens"] == 0
    if not cache:
        assert reused == [0, 0, 0]
        return
    n_prompt = len(first.prompt_token_ids)
    assert reused[0] == n_prompt - 1
    left = first.prompt_token_ids + first.token_ids[:-1]  # the last token was never read

    def shared(prompt):
        return next((i for i, (a, b) in enumerate(zip(left, prompt)) if a != b), len(left))

    assert shared(got[1].prompt_token_ids) > n_prompt, "the longer prompt does not extend it"
    assert reused[1] == shared(got[1].prompt_token_ids)
    assert reused[2] == shared(got[2].prompt_token_ids) < 2  # at most a start token


@pytest.mark.parametrize("mib", [64, 0])
def test_a_prompt_no_sequence_holds_any_more_is_restored_from_host_memory(tiny_llama, mib):
    """llama.cpp's prompt cache in host memory: with 2 sequences, 4 other prompts later the
    first one's cells are gone from both, and it is restored from its saved state (reading
    only its last token) with the static path's tokens; `prompt_cache_mib=0` keeps nothing."""
    require_engine("llamacpp")
    gen = unillm.load("llamacpp", tiny_llama, quantization="f32", kv_cache_type="f32",
                      parallel=2, prompt_cache_mib=mib)
    try:
        params = SP(max_tokens=6, temperature=0.0, ignore_eos=True)
        expected = gen.generate(PROMPTS[:1], params)[0]
        for prompt in PROMPTS[:5]:
            _stream_many(gen, [prompt], params)
        _, (again,) = _stream_many(gen, PROMPTS[:1], params)
    finally:
        gen.close()
    assert again.token_ids == expected.token_ids
    assert again.engine_params["prompt_cache_tokens"] == (
        len(again.prompt_token_ids) - 1 if mib else 1)  # without: the shared start token


def test_per_request_sampling_parameters_are_honoured(hf):
    """The sampling manager varies temperature, top-k and top-p per request: top_k=1 leaves
    only the argmax (the greedy text), next to requests that really sample."""
    greedy = hf.generate(PROMPTS[:4], SP(max_tokens=16, temperature=0.0))
    params = [SP(max_tokens=16, temperature=0.8, top_k=1), SP(max_tokens=16, temperature=1.3),
              SP(max_tokens=16, temperature=0.7, top_k=1, top_p=0.9),
              SP(max_tokens=16, temperature=1.0, top_p=0.5)]
    _, got = _stream_many(hf, PROMPTS[:4], params)
    assert all(_ran_in_the_running_batch(c, "transformers") for c in got)
    assert got[0].token_ids == greedy[0].token_ids
    assert got[2].token_ids == greedy[2].token_ids
    assert got[0].engine_params["top_k"] == 1 and got[1].engine_params["temperature"] == 1.3
    assert all(len(c.token_ids) >= 1 for c in got)


def test_a_top_k_past_the_vocabulary_keeps_every_token(hf):
    """top_k at or past the vocabulary size means no top-k, as None does: the running batch
    takes it (it once indexed past transformers' sorted scores, which stopped the manager's
    loop for every request) and goes on serving afterwards."""
    from unillm.params import TOP_K_MAX

    params = SP(max_tokens=8, temperature=0.8, top_k=TOP_K_MAX, ignore_eos=True)
    for _ in range(2):
        _, got = _stream_many(hf, PROMPTS[:2], params)
        assert all(_ran_in_the_running_batch(c, "transformers") for c in got)
        assert [len(c.token_ids) for c in got] == [8, 8]
        assert all(c.engine_params["top_k"] <= TOP_K_MAX for c in got)


def test_seeded_sampling_and_logprobs_on_llamacpp_equal_the_static_path(llamacpp):
    """llama.cpp's running batch samples each sequence with its own chain (its own seed), so
    everything the static path honours is honoured here too, exactly."""
    params = [SP(max_tokens=12, temperature=0.9, top_k=40, seed=7 + i, logprobs=2)
              for i in range(4)]
    expected = llamacpp.generate(PROMPTS[:4], params)
    _, got = _stream_many(llamacpp, PROMPTS[:4], params)
    assert all(_ran_in_the_running_batch(c, "llamacpp") for c in got)
    assert [c.token_ids for c in got] == [c.token_ids for c in expected]
    for want, have in zip(expected, got):
        assert [lp.logprob for lp in have.samples[0].logprobs] == pytest.approx(
            [lp.logprob for lp in want.samples[0].logprobs], abs=1e-5)


@pytest.mark.parametrize("field,value", [
    ("logprobs", 1), ("repetition_penalty", 1.3), ("presence_penalty", 0.5),
    ("frequency_penalty", 0.5), ("min_p", 0.1), ("n", 2), ("seed", 3), ("min_tokens", 3)])
def test_what_transformers_running_batch_cannot_vary_is_refused_by_name(hf, field, value):
    params = SP(max_tokens=8, temperature=0.8, **{field: value})
    prepared = hf.prepare(PROMPTS[0], params)
    running = hf.running_batch()
    assert running is not None
    assert running.refusal(prepared.requests[0]) == field
    # ... so the prompt runs on the static path, with the same result as generate
    _, (got,) = _stream_many(hf, [PROMPTS[0]], params)
    assert not _ran_in_the_running_batch(got, "transformers")


def test_min_tokens_is_accepted_when_nothing_could_stop_the_sample_early(hf):
    running = hf.running_batch()
    params = SP(max_tokens=8, temperature=0.0, min_tokens=4, ignore_eos=True)
    (request,) = hf.prepare(PROMPTS[0], params).requests
    assert running.refusal(request) is None


def test_a_mixed_list_runs_on_the_static_path_with_the_same_results(hf):
    params = [SP(max_tokens=10, temperature=0.0), SP(max_tokens=10, temperature=0.0, logprobs=1)]
    expected = hf.generate(PROMPTS[:2], params)
    _, got = _stream_many(hf, PROMPTS[:2], params)
    assert not any(_ran_in_the_running_batch(c, "transformers") for c in got)
    assert [c.token_ids for c in got] == [c.token_ids for c in expected]


def test_a_prompt_too_long_for_a_sequence_runs_on_the_static_path(tiny_llama):
    require_engine("llamacpp")
    gen = unillm.load("llamacpp", tiny_llama, quantization="f32", kv_cache_type="f32",
                      parallel=2, parallel_ctx=32)
    try:
        (request,) = gen.prepare(PROMPTS[0], SP(max_tokens=40, temperature=0.0)).requests
        assert gen.running_batch().refusal(request) == "prompt"
        expected = gen.generate(PROMPTS[0], SP(max_tokens=40, temperature=0.0))
        _, (got,) = _stream_many(gen, [PROMPTS[0]], SP(max_tokens=40, temperature=0.0))
        assert got.token_ids == expected.token_ids
        assert not _ran_in_the_running_batch(got, "llamacpp")
    finally:
        gen.close()


def test_cancelling_one_prompt_frees_its_sequence_for_the_next(tiny_llama):
    """Two sequences, three long prompts: the third starts only when a sequence frees up, and
    cancelling the first frees one at once (the second is still running when the third ends)."""
    require_engine("llamacpp")
    gen = unillm.load("llamacpp", tiny_llama, quantization="f32", kv_cache_type="f32",
                      parallel=2)
    try:
        params = [SP(max_tokens=400, temperature=0.0, ignore_eos=True)] * 2 + [
            SP(max_tokens=5, temperature=0.0, ignore_eos=True)]
        seen = {0: 0, 1: 0, 2: 0}
        order = []
        with gen.stream_many(PROMPTS[:3], params) as multi:
            for index, item in multi:
                if isinstance(item, unillm.Completion):
                    order.append((index, item.finish_reason))
                    if index == 2:
                        break
                    continue
                seen[index] += 1
                if index == 0 and seen[0] == 20:
                    assert seen[2] == 0, "the third prompt ran before a sequence was free"
                    multi.cancel(0)
        assert order == [(0, "abort"), (2, "length")]
        assert seen[1] < 400, "the third prompt waited for the second to end"
    finally:
        gen.close()


def test_static_calls_while_the_running_batch_runs_keep_their_results(gen):
    """`generate` while other prompts stream through the running batch: both give the tokens
    they give alone (transformers pauses its batch meanwhile: running both at once was found
    to change the static call's tokens)."""
    import threading

    params = SP(max_tokens=30, temperature=0.0, ignore_eos=True)
    alone = [c.token_ids for c in gen.generate(PROMPTS[:3], params)]
    stop = threading.Event()
    batched: list[list] = []

    def stream_continuously():
        while not stop.is_set():
            _, got = _stream_many(gen, PROMPTS[:3], params)
            batched.append([c.token_ids for c in got])

    thread = threading.Thread(target=stream_continuously)
    thread.start()
    try:
        static = [[c.token_ids for c in gen.generate(PROMPTS[:3], params)] for _ in range(4)]
    finally:
        stop.set()
        thread.join()
    assert batched, "nothing ran through the running batch"
    assert all(s == alone for s in static)
    assert all(b == alone for b in batched)


def test_vllm_engine_running_batch_with_a_stand_in_for_vllms_engine(tiny_llama):
    """unillm's vLLM engine code (VllmEngine, its driver, its running batch) over a stand-in
    for vLLM's `LLMEngine` (tests/servers/vllm_standin.py): vLLM's kernels need AVX-512, and
    tests/engines/test_vllm.py runs the real one where they can. stream_many goes through the
    running batch, whole steps at once, with the tokens the engine produced; a cancelled prompt
    is aborted in the engine while the others go on."""
    from ..servers.vllm_standin import standin_engine

    engine = standin_engine(tiny_llama, 0.001, 256)
    gen = unillm.Generator(engine, engine_name="vllm", model=tiny_llama)
    try:
        assert gen.running_batch() is not None
        params = SP(max_tokens=12, temperature=0.0)
        expected = gen.generate(PROMPTS, params)
        running = gen.running_batch()
        sinks, original = _counting_sinks(running)
        try:
            texts, got = _stream_many(gen, PROMPTS, params)
        finally:
            running.add = original
        assert [c.token_ids for c in got] == [c.token_ids for c in expected]
        assert all(len(c.token_ids) == 12 for c in got)
        assert [texts.get(i, "") for i in range(len(PROMPTS))] == [c.text for c in got]
        assert max(sinks) > 1, "events were not handed over a step at a time"

        long = SP(max_tokens=400, temperature=0.0)
        seen: dict[int, int] = {}
        done = {}
        with gen.stream_many(PROMPTS[:3], [long, params, params]) as multi:
            for index, item in multi:
                if isinstance(item, unillm.Completion):
                    done[index] = item
                    continue
                seen[index] = seen.get(index, 0) + 1
                if index == 0 and seen[0] == 3:
                    multi.cancel(0)
        assert done[0].finish_reason == "abort" and len(done[0].token_ids) < 400
        assert [done[1].token_ids, done[2].token_ids] == [c.token_ids for c in expected[1:3]]
        assert not engine.driver.engine.requests, "the cancelled request still runs"
    finally:
        gen.close()
