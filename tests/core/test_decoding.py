"""Detokenizing and emulated stops: streamed text must equal batch text, whatever the ids."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unillm.decoding import (
    IncrementalDetokenizer,
    SampleTracker,
    StopRules,
    finalize,
    find_stop,
    holdback,
)
from unillm.testing.fake import ByteTokenizer


@pytest.fixture(scope="module", params=["bytes", "hf"])
def tok(request):
    """A byte-level tokenizer (every multi-byte character spans tokens) and a real one."""
    if request.param == "bytes":
        return ByteTokenizer()
    pytest.importorskip("transformers", reason="the Hugging Face tokenizer needs transformers")
    from unillm.testing import build_test_model
    from unillm.tokenizer import HFTokenizer

    return HFTokenizer.from_pretrained(str(build_test_model("llama-tiny")))


def test_find_stop_prefers_the_match_that_completes_first():
    assert find_stop("abcd", ["abcd", "bc"]).stop == "bc"
    assert find_stop("xxabyy", ["ab", "xab"]).stop == "xab"  # same end: the longer one
    assert find_stop("aaa", ["a"], min_end=2).start == 2
    assert find_stop("abc", ["zz"]) is None


def test_holdback_keeps_back_possible_stop_prefixes():
    assert holdback("hello wor", ["world"]) == 3
    assert holdback("hello", ["world"]) == 0
    assert holdback("ab", ["abc", "bx"]) == 2


def test_finalize_cuts_text_and_tokens_at_a_stop_string(tok):
    ids = tok.encode("hello world and more")[1:]
    rules = StopRules(stop=("world",), terminators=tok.eos_token_ids)
    final = finalize(ids, tok.decode, rules, engine_finish="length")
    assert final.text == "hello "
    assert final.finish_reason == "stop" and final.stop_reason == "world"
    kept = tok.decode(final.token_ids)
    assert "world" in kept and "world" not in tok.decode(final.token_ids[:-1])


def test_finalize_ignores_stops_completed_before_min_tokens(tok):
    ids = tok.encode("ab ab ab ab ab ab")[1:]
    rules = StopRules(stop=("ab",), min_tokens=4, terminators=frozenset())
    final = finalize(ids, tok.decode, rules, engine_finish="length")
    assert len(final.token_ids) >= 4


def test_finalize_stop_token_excluded_from_text(tok):
    ids = tok.encode("one two three four")[1:]
    rules = StopRules(stop_token_ids=frozenset({ids[2]}), terminators=frozenset({ids[2]}))
    final = finalize(ids, tok.decode, rules, engine_finish="length")
    assert final.token_ids == tuple(ids[:3])
    assert final.text == tok.decode(ids[:2])
    assert final.stop_reason == ids[2]


token_lists = st.lists(st.integers(min_value=0, max_value=2047), min_size=1, max_size=40)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=token_lists)
def test_incremental_detokenizing_concatenates_to_the_full_decode(tok, ids):
    detok = IncrementalDetokenizer(tok.decode)
    streamed = "".join(detok.push([t]) for t in ids)
    full = tok.decode(ids)
    assert full.startswith(streamed)
    tracker = SampleTracker(tok.decode, StopRules())
    released = "".join(tracker.push([t]) for t in ids)
    final, rest = tracker.finish("length")
    assert released + rest == final.text == full


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=token_lists)
def test_keeping_special_tokens_streams_the_same_text_as_a_batch(tok, ids):
    """skip_special_tokens=False decodes with `decode_with_special`, which must be as
    prefix-stable as `decode` (ids 0..3 and 256/257 are the two tokenizers' special tokens)."""
    detok = IncrementalDetokenizer(tok.decode_with_special)
    full = tok.decode_with_special(ids)
    assert full.startswith("".join(detok.push([t]) for t in ids))
    tracker = SampleTracker(tok.decode_with_special, StopRules())
    released = "".join(tracker.push([t]) for t in ids)
    final, rest = tracker.finish("length")
    assert released + rest == final.text == full


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=token_lists, data=st.data())
def test_streaming_stop_detection_agrees_with_batch_finalize(tok, ids, data):
    full = tok.decode(ids)
    usable = [c for c in full if c != "\ufffd"]
    if len(usable) < 2:
        return
    start = data.draw(st.integers(0, len(full) - 2))
    stop = full[start:start + data.draw(st.integers(1, 3))]
    if "\ufffd" in stop or not stop:
        return
    min_tokens = data.draw(st.integers(0, len(ids)))
    rules = StopRules(stop=(stop,), min_tokens=min_tokens, terminators=frozenset())
    batch = finalize(ids, tok.decode, rules, engine_finish="length")
    tracker = SampleTracker(tok.decode, rules)
    released = ""
    for t in ids:
        released += tracker.push([t])
        if tracker.stopped:
            break
    final, rest = tracker.finish("length")
    assert final == batch
    assert released + rest == batch.text


def test_text_only_engines_get_stop_strings_applied_to_text():
    tracker = SampleTracker(None, StopRules(stop=("END",)))
    out = tracker.push((), "abc E")
    out += tracker.push((), "ND and more")
    assert tracker.stopped
    final, rest = tracker.finish("length")
    assert out + rest == "abc " == final.text
    assert final.finish_reason == "stop"
