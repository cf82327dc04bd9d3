"""CTranslate2-specific behaviour (the shared semantics are in tests/conformance)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import unillm
from unillm import SamplingParams as SP

from ..conftest import require_engine


@pytest.fixture(scope="module")
def ct2(tiny_llama):
    require_engine("ctranslate2")
    gen = unillm.load("ctranslate2", tiny_llama, compute_type="float32")
    yield gen
    gen.close()


class _Recording:
    """Stands in front of the engine's ctranslate2.Generator and keeps what it returned."""

    def __init__(self, real):
        self.real = real
        self.results = []

    def generate_batch(self, *args, **kwargs):
        out = self.real.generate_batch(*args, **kwargs)
        self.results.append(out)
        return out

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.fixture
def recorded(ct2):
    engine = ct2.engine
    real = engine._main()
    engine._generator = recording = _Recording(real)
    yield recording
    if engine._generator is recording:
        engine._generator = real


# -- conversion cache -------------------------------------------------------------------------
def test_a_hugging_face_model_is_converted_once_per_quantization(tiny_llama, tmp_path, monkeypatch,
                                                                 caplog):
    require_engine("ctranslate2")
    from unillm.backends.ctranslate2.convert import ensure_converted, read_metadata

    monkeypatch.setenv("UNILLM_CACHE", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="unillm.ctranslate2"):
        first = ensure_converted(tiny_llama, "float32")
    assert any("converting" in r.getMessage() for r in caplog.records), "no progress message"
    assert first.parent == tmp_path / "ctranslate2"
    meta = read_metadata(first)
    assert meta["quantization"] == "float32" and meta["context_length"] == 2048
    assert meta["eos_token_ids"] == [2]
    assert (first / "tokenizer.json").is_file(), "the converted model carries its tokenizer"

    caplog.clear()
    mtime = (first / "model.bin").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="unillm.ctranslate2"):
        again = ensure_converted(tiny_llama, "float32")
    assert again == first and (first / "model.bin").stat().st_mtime_ns == mtime
    assert not any("converting" in r.getMessage() for r in caplog.records)

    int8 = ensure_converted(tiny_llama, "int8")
    assert int8 != first and read_metadata(int8)["quantization"] == "int8"
    assert (int8 / "model.bin").stat().st_size < (first / "model.bin").stat().st_size


def test_an_interrupted_conversion_leaves_nothing_to_reuse(tiny_llama, tmp_path, monkeypatch):
    """Fault injection: the real converter is replaced by one that dies half-way."""
    require_engine("ctranslate2")
    from unillm.backends.ctranslate2 import convert

    monkeypatch.setenv("UNILLM_CACHE", str(tmp_path))

    def dies_half_way(source, out, *args):
        (out / "model.bin").write_bytes(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(convert, "_convert", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        convert.ensure_converted(tiny_llama, "float32")
    root = tmp_path / "ctranslate2"
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.undo()
    monkeypatch.setenv("UNILLM_CACHE", str(tmp_path))
    done = convert.ensure_converted(tiny_llama, "float32")
    assert convert.is_complete(done)


def test_an_incomplete_cache_entry_is_rebuilt_not_used(tiny_llama, tmp_path, monkeypatch):
    require_engine("ctranslate2")
    from unillm.backends.ctranslate2 import convert

    monkeypatch.setenv("UNILLM_CACHE", str(tmp_path))
    target = convert.cache_dir_for(tiny_llama, "float32", None, False)
    target.mkdir(parents=True)
    (target / "model.bin").write_bytes(b"not a model")  # no unillm.json: never finished
    done = convert.ensure_converted(tiny_llama, "float32")
    assert done == target and convert.is_complete(done)
    assert (done / "model.bin").stat().st_size > 1000


def test_a_changed_checkpoint_is_converted_again(tiny_llama, tmp_path, monkeypatch):
    require_engine("ctranslate2")
    import shutil

    from unillm.backends.ctranslate2 import convert

    monkeypatch.setenv("UNILLM_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "model"
    shutil.copytree(tiny_llama, copy)
    before = convert.cache_dir_for(str(copy), "float32", None, False)
    (copy / "config.json").write_text((copy / "config.json").read_text() + "\n")
    assert convert.cache_dir_for(str(copy), "float32", None, False) != before


# -- loading ------------------------------------------------------------------------------------
def test_a_ctranslate2_directory_loads_directly_and_matches(ct2):
    model_dir = ct2.info["model_dir"]
    params = SP(max_tokens=16, temperature=0.0, ignore_eos=True)
    with unillm.load("ctranslate2", model_dir, compute_type="float32") as direct:
        assert direct.info["model_dir"] == model_dir
        assert direct.generate("Hello", params).token_ids == ct2.generate("Hello", params).token_ids


def test_a_directory_without_tokenizer_needs_the_tokenizer_option(ct2, tmp_path, tiny_llama):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("model.bin", "config.json", "vocabulary.json"):
        os.symlink(Path(ct2.info["model_dir"]) / name, bare / name)
    with pytest.raises(unillm.EngineError, match="tokenizer="):
        unillm.load("ctranslate2", bare)
    with unillm.load("ctranslate2", bare, tokenizer=tiny_llama) as gen:
        params = SP(max_tokens=8, temperature=0.0, ignore_eos=True)
        assert gen.generate("Hello", params).token_ids == ct2.generate("Hello", params).token_ids
        assert gen.engine.context_length is None  # not known without unillm's metadata


def test_a_compute_type_the_device_lacks_is_refused_by_name(tiny_llama):
    require_engine("ctranslate2")
    import ctranslate2

    supported = ctranslate2.get_supported_compute_types("cpu")
    missing = [t for t in ("float16", "bfloat16", "int8_float16", "int16") if t not in supported]
    if not missing:
        pytest.skip("this CPU supports every compute type")
    with pytest.raises(unillm.InvalidParameterError) as info:
        unillm.load("ctranslate2", tiny_llama, compute_type=missing[0], device="cpu")
    assert info.value.field == "compute_type" and "float32" in str(info.value)


def test_bad_options_name_themselves(tiny_llama):
    require_engine("ctranslate2")
    with pytest.raises(unillm.InvalidParameterError, match="device"):
        unillm.load("ctranslate2", tiny_llama, device="tpu")
    with pytest.raises(unillm.UnknownParameterError, match="compute_type"):
        unillm.load("ctranslate2", tiny_llama, dtype="float32")


def test_the_context_length_is_known_from_the_conversion(ct2):
    with pytest.raises(unillm.ContextLengthError):
        ct2.generate("Hello", SP(max_tokens=2048, temperature=0.0))


def test_out_of_vocabulary_prompt_ids_are_refused(ct2):
    for bad in (99999, -1):
        with pytest.raises(unillm.InvalidParameterError, match="prompt_token_ids"):
            ct2.generate({"prompt_token_ids": [1, 5, bad]}, SP(max_tokens=4))


# -- what CTranslate2 is sent -------------------------------------------------------------------
def test_every_option_is_sent_explicitly(ct2):
    greedy = ct2.generate("Hello", SP(max_tokens=7, temperature=0.0)).engine_params
    assert greedy["sampling_topk"] == 1 and greedy["max_length"] == 7
    assert greedy["include_prompt_in_result"] is False and greedy["return_end_token"] is True
    assert greedy["end_token"] == [2] and greedy["set_random_seed"] is None

    sampled = ct2.generate("Hello", SP(max_tokens=7, temperature=0.8, top_p=0.9, seed=5,
                                       stop_token_ids=[17], ignore_eos=True)).engine_params
    assert sampled["sampling_topk"] == 0, "top_k=None must reach CTranslate2 as 0 (all), not 1"
    assert sampled["sampling_temperature"] == 0.8 and sampled["sampling_topp"] == 0.9
    assert sampled["end_token"] == [17], "ignore_eos leaves only the stop ids"
    assert sampled["set_random_seed"] == 5

    penalised = ct2.generate("Hello", SP(max_tokens=7, temperature=0.0,
                                         repetition_penalty=1.5)).engine_params
    prompt_len = len(ct2.tokenizer.encode("Hello"))
    assert penalised["include_prompt_in_result"] is True
    assert penalised["max_length"] == prompt_len - 1 + 7


def test_a_stop_string_stops_generation_inside_ctranslate2(ct2, recorded):
    full = ct2.generate("def f(x):", SP(max_tokens=40, temperature=0, ignore_eos=True))
    stop = next(full.text[i:i + 2] for i in range(6, len(full.text))
                if "\ufffd" not in full.text[i:i + 2] and full.text[i:i + 2].strip())
    recorded.results.clear()
    out = ct2.generate("def f(x):", SP(max_tokens=200, temperature=0, ignore_eos=True, stop=[stop]))
    assert out.finish_reason == "stop" and out.stop_reason == stop
    generated = recorded.results[-1][0].sequences_ids[0]
    assert len(generated) == len(out.token_ids), "CTranslate2 kept generating after the stop"


def test_seeded_calls_reload_and_unseeded_calls_do_not(ct2):
    before = ct2.info["seeded_reloads"]
    ct2.generate("Hello", SP(max_tokens=4, temperature=1.0))
    ct2.generate("Hello", SP(max_tokens=4, temperature=0.0, seed=3))  # greedy: seed unused
    assert ct2.info["seeded_reloads"] == before
    ct2.generate("Hello", SP(max_tokens=4, temperature=1.0, seed=3))
    assert ct2.info["seeded_reloads"] == before + 1


def test_batch_calls_are_timed_per_token_on_request(ct2, tiny_llama):
    params = SP(max_tokens=6, temperature=0, ignore_eos=True)
    plain = ct2.generate(["a", "bb bb"], params)
    for c in plain:  # no callback: end-to-end only, nothing estimated
        assert c.timing.source == "end" and c.timing.ttft is None and c.timing.e2e > 0
    with unillm.load("ctranslate2", tiny_llama, compute_type="float32",
                     batch_token_times=True) as timed:
        out = timed.generate(["a", "bb bb"], params)
    for c, p in zip(out, plain):
        assert c.token_ids == p.token_ids
        assert c.timing.source == "callback" and len(c.timing.token_times) == 6
        assert list(c.timing.token_times) == sorted(c.timing.token_times)
        assert 0 < c.timing.ttft <= c.timing.e2e


def test_a_penalised_batch_without_callback_returns_only_the_output(ct2, tiny_llama):
    prompts = ["x", "the quick brown fox", "def f(x):"]
    params = SP(max_tokens=12, temperature=0, ignore_eos=True, repetition_penalty=1.7)
    plain = ct2.generate(prompts, params)  # ids cut from CTranslate2's results
    with unillm.load("ctranslate2", tiny_llama, compute_type="float32",
                     batch_token_times=True) as timed:
        called = timed.generate(prompts, params)  # ids collected by the callback
    assert [c.token_ids for c in plain] == [c.token_ids for c in called]
    assert all(len(c.token_ids) == 12 for c in plain)
    stream = ct2.stream(prompts[1], params)
    assert "".join(c.text for c in stream) == plain[1].text
    assert stream.completion.token_ids == plain[1].token_ids


def test_max_batch_size_splits_without_changing_results(ct2, tiny_llama):
    prompts = ["a", "bb bb", "the quick brown fox", "x", "import os"]
    params = SP(max_tokens=12, temperature=0, ignore_eos=True)
    with unillm.load("ctranslate2", tiny_llama, compute_type="float32", max_batch_size=2) as small:
        split = small.generate(prompts, params)
    whole = ct2.generate(prompts, params)
    assert [c.token_ids for c in split] == [c.token_ids for c in whole]


def test_an_int8_process_exits_cleanly(tiny_llama):
    """CTranslate2 4.8 aborts at interpreter exit when an int8 generator that ran a callback is
    destroyed during finalization; the engine releases its generators in an atexit hook."""
    require_engine("ctranslate2")
    code = textwrap.dedent(f"""
        import unillm
        gen = unillm.load("ctranslate2", {tiny_llama!r}, compute_type="int8")
        gen.generate(["a", "b c"], unillm.SamplingParams(max_tokens=8, temperature=0))
        print("done")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "done" in out.stdout


# -- streaming a batch ------------------------------------------------------------------------
PROMPTS = ["a", "the quick brown fox", "def f(x):", "x y", "import os\nimport sys"]


def _stream_many(gen, prompts, params, cancel_after: dict[int, int] | None = None):
    multi = gen.stream_many(prompts, params)
    texts: dict[int, str] = {}
    chunks: dict[int, int] = {}
    completions = {}
    for index, item in multi:
        if isinstance(item, unillm.Completion):
            completions[index] = item
            continue
        texts[index] = texts.get(index, "") + item.text
        chunks[index] = chunks.get(index, 0) + 1
        if cancel_after and chunks[index] == cancel_after.get(index):
            multi.cancel(index)
    return texts, completions


def test_streamed_prompts_share_one_generate_batch_call(ct2, recorded):
    assert ct2.batches_streams
    params = SP(max_tokens=12, temperature=0, ignore_eos=True)
    expected = ct2.generate(PROMPTS, params)
    recorded.results.clear()
    texts, completions = _stream_many(ct2, PROMPTS, params)
    assert len(recorded.results) == 1 and len(recorded.results[0]) == len(PROMPTS)
    assert [completions[i].token_ids for i in range(len(PROMPTS))] == [c.token_ids for c in expected]
    assert [texts[i] for i in range(len(PROMPTS))] == [c.text for c in expected]


def test_a_cancelled_stream_stops_its_row_inside_ctranslate2(ct2, recorded):
    params = SP(max_tokens=200, temperature=0, ignore_eos=True)
    recorded.results.clear()
    _, completions = _stream_many(ct2, PROMPTS[:3], params, cancel_after={1: 3})
    assert completions[1].finish_reason == "abort"
    assert [completions[i].finish_reason for i in (0, 2)] == ["length", "length"]
    (results,) = recorded.results
    lengths = [len(r.sequences_ids[0]) for r in results]
    assert lengths[0] == lengths[2] == 200
    assert lengths[1] < 100, "CTranslate2 kept generating the cancelled row"


def test_a_stop_string_stops_its_row_of_a_streamed_batch_inside_ctranslate2(ct2, recorded):
    full = ct2.generate("def f(x):", SP(max_tokens=40, temperature=0, ignore_eos=True))
    stop = next(full.text[i:i + 2] for i in range(6, len(full.text))
                if "\ufffd" not in full.text[i:i + 2] and full.text[i:i + 2].strip())
    params = SP(max_tokens=200, temperature=0, ignore_eos=True, stop=[stop])
    recorded.results.clear()
    texts, completions = _stream_many(ct2, ["def f(x):", "the quick brown fox"], params)
    assert completions[0].finish_reason == "stop" and completions[0].stop_reason == stop
    assert texts[0] == completions[0].text == ct2.generate("def f(x):", params).text
    generated = [len(r.sequences_ids[0]) for r in recorded.results[0]]
    assert generated[0] < 100, "CTranslate2 kept generating after the stop"


def test_a_penalised_streamed_batch_runs_one_call_per_prompt_length(ct2, recorded):
    prompts = ["x", "the quick brown fox", "def f(x):", "def g(y):"]
    params = SP(max_tokens=12, temperature=0, ignore_eos=True, repetition_penalty=1.7)
    expected = ct2.generate(prompts, params)
    lengths = {len(ct2.tokenizer.encode(p)) for p in prompts}
    assert len(lengths) == 3, "two of the prompts must have the same length"
    recorded.results.clear()
    texts, completions = _stream_many(ct2, prompts, params)
    assert len(recorded.results) == 3
    assert [completions[i].token_ids for i in range(4)] == [c.token_ids for c in expected]
    assert [texts[i] for i in range(4)] == [c.text for c in expected]


def test_each_decoding_step_is_handed_over_at_once(ct2, monkeypatch):
    """The callback collects a step's tokens of every row and hands them over together (one
    consumer wake-up per step, not per token and row), prompts of unequal lengths included."""
    from unillm.backends.ctranslate2 import streaming as ct2_engine

    handovers: list[list] = []

    class Recording(ct2_engine.RowStream):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            emit = self.emit
            self.emit = lambda items: (handovers.append(items), emit(items))

    monkeypatch.setattr(ct2_engine, "RowStream", Recording)
    params = SP(max_tokens=10, temperature=0, ignore_eos=True)
    _, completions = _stream_many(ct2, PROMPTS, params)
    assert all(c.timing.output_tokens == 10 for c in completions.values())
    assert sum(len(h) for h in handovers) == 10 * len(PROMPTS)
    spread = max(len(ct2.tokenizer.encode(p)) for p in PROMPTS) - min(
        len(ct2.tokenizer.encode(p)) for p in PROMPTS)
    assert len(handovers) <= 10 + spread  # one per decoding step
    for items in handovers:
        rows = [index for index, _ in items]
        assert len(rows) == len(set(rows)), "a handover holds two steps of one row"


def test_ctranslate2_sub_batches_stream_the_same_tokens(ct2, tiny_llama):
    params = SP(max_tokens=12, temperature=0, ignore_eos=True)
    expected = ct2.generate(PROMPTS, params)
    with unillm.load("ctranslate2", tiny_llama, compute_type="float32", max_batch_size=2) as small:
        texts, completions = _stream_many(small, PROMPTS, params)
    assert [completions[i].token_ids for i in range(len(PROMPTS))] == [c.token_ids for c in expected]
    assert [texts[i] for i in range(len(PROMPTS))] == [c.text for c in expected]
