"""Token rules (`logit_bias`, `allowed_token_ids`, `bad_words`): the same meaning, vLLM's, on
every engine that has them natively, checked against a reference written out here.

The reference calls the float32 model's forward pass directly and applies the rules in vLLM's
order (allowed mask and banned words, then the bias, then the repetition penalty, then argmax),
with its own tokenization of the banned words, so it shares no code with any engine. Engines
run greedy in float32 (exact parity with the reference, as tests/conformance requires).
"""

from __future__ import annotations

import functools

import pytest

import unillm
from unillm import SamplingParams as SP
from unillm.testing.fake import FakeEngine

from ..conftest import require_engine

ENGINES = ["transformers", "llamacpp", "vllm"]
OPTIONS = {"transformers": {"dtype": "float32"},
           "llamacpp": {"quantization": "f32", "kv_cache_type": "f32"},
           "vllm": {"dtype": "float32", "enforce_eager": True}}
PROMPTS = ["The quick brown fox", "Le café est très chaud", "def f(x):"]
N = 16


@functools.lru_cache(maxsize=2)
def _model(path: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(path))


def _banned_sequences(tok, words) -> list[list[int]]:
    """vLLM's rule: the word left-stripped, plus its space-prefixed form when that starts with
    another token and has the same length."""
    out = []
    for word in words:
        plain = tok.encode(word.lstrip(), add_special_tokens=False)
        out.append(plain)
        spaced = tok.encode(" " + word.lstrip(), add_special_tokens=False)
        if spaced and spaced[0] != plain[0] and len(spaced) == len(plain):
            out.append(spaced)
    return out


def reference(path: str, prompt: str, n: int, *, bias=None, allowed=None, words=(),
              penalty: float = 1.0) -> list[int]:
    import torch

    model, tok = _model(path)
    ids = tok.encode(prompt)
    banned_seqs = _banned_sequences(tok, words)
    out: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids])).logits[0, -1].clone()
            if allowed is not None:
                keep = torch.full_like(logits, float("-inf"))
                keep[list(allowed)] = 0.0
                logits += keep
            for seq in banned_seqs:
                rest = seq[:-1]
                if len(rest) <= len(out) and (not rest or out[len(out) - len(rest):] == rest):
                    logits[seq[-1]] = float("-inf")
            for token, value in (bias or {}).items():
                logits[token] += value
            if penalty != 1.0:
                index = torch.tensor(sorted(set(ids)))
                score = logits[index]
                logits[index] = torch.where(score < 0, score * penalty, score / penalty)
            token = int(logits.argmax())
            out.append(token)
            ids.append(token)
            if token == tok.eos_token_id:
                break
    return out


@pytest.fixture(scope="module", params=ENGINES)
def gen(request, tiny_llama):
    require_engine(request.param)
    g = unillm.load(request.param, tiny_llama, **OPTIONS[request.param])
    yield g
    g.close()


def _greedy(gen, prompt, **rules):
    return list(gen.generate(prompt, SP(max_tokens=N, temperature=0.0, **rules)).token_ids)


def test_a_bias_is_added_to_the_raw_logits_before_the_penalty(gen, tiny_llama):
    _, tok = _model(tiny_llama)
    for prompt in PROMPTS:
        plain = reference(tiny_llama, prompt, N)
        # push the greedy first token away, and two others up (moderately, so that the
        # penalty, applied after the bias, still decides between them)
        bias = {plain[0]: -100.0, plain[1]: 6.0, tok.encode(" the", add_special_tokens=False)[0]: 4.5}
        expected = reference(tiny_llama, prompt, N, bias=bias, penalty=1.8)
        assert expected != plain  # the rule changed the output
        assert _greedy(gen, prompt, logit_bias=bias, repetition_penalty=1.8) == expected


def test_only_allowed_tokens_are_generated(gen, tiny_llama):
    for prompt in PROMPTS:
        plain = reference(tiny_llama, prompt, N)
        allowed = sorted(set(plain[1::2]) | set(range(100, 140)))
        expected = reference(tiny_llama, prompt, N, allowed=allowed)
        out = _greedy(gen, prompt, allowed_token_ids=allowed)
        assert out == expected and set(out) <= set(allowed)


def _words_in(tok, ids: list[int]) -> list[str]:
    """Texts whose vLLM token sequences occur in `ids` (so banning them changes the output)."""
    words = []
    for i in range(len(ids)):
        for length in (1, 2):
            text = tok.decode(ids[i:i + length])
            if not text.strip() or "\ufffd" in text:
                continue
            for seq in _banned_sequences(tok, [text]):
                if any(ids[j:j + len(seq)] == seq for j in range(len(ids))):
                    words.append(text)
                    break
    return list(dict.fromkeys(words))


def test_bad_words_are_never_written_as_the_model_tokenizes_them(gen, tiny_llama):
    _, tok = _model(tiny_llama)
    checked = 0
    for prompt in PROMPTS:
        plain = reference(tiny_llama, prompt, N)
        words = _words_in(tok, plain)[:3]
        if not words:
            continue
        expected = reference(tiny_llama, prompt, N, words=words)
        assert expected != plain
        out = _greedy(gen, prompt, bad_words=words)
        assert out == expected
        for seq in _banned_sequences(tok, words):
            assert not any(out[j:j + len(seq)] == seq for j in range(len(out)))
        checked += 1
    assert checked, "no prompt wrote a bannable word: the test checked nothing"


def test_rules_and_their_batch_neighbours_do_not_mix(gen, tiny_llama):
    plain = reference(tiny_llama, PROMPTS[0], N)
    biased = SP(max_tokens=N, temperature=0.0, logit_bias={plain[0]: -100.0})
    outs = gen.generate(PROMPTS, [biased, SP(max_tokens=N, temperature=0.0), biased])
    assert list(outs[1].token_ids) == reference(tiny_llama, PROMPTS[1], N)
    assert list(outs[0].token_ids) == reference(tiny_llama, PROMPTS[0], N,
                                                bias={plain[0]: -100.0})


def test_streamed_ids_equal_batch_ids(gen, tiny_llama):
    plain = reference(tiny_llama, PROMPTS[2], N)
    params = SP(max_tokens=N, temperature=0.0, logit_bias={plain[0]: -100.0},
                allowed_token_ids=sorted(set(plain) | set(range(200, 260))))
    stream = gen.stream(PROMPTS[2], params)
    ids = [t for chunk in stream for t in chunk.token_ids]
    assert ids == list(gen.generate(PROMPTS[2], params).token_ids)


def test_seeded_sampling_keeps_to_the_allowed_tokens(gen):
    allowed = list(range(300, 340))
    out = gen.generate(PROMPTS, SP(max_tokens=N, temperature=1.0, seed=7,
                                   allowed_token_ids=allowed))
    for c in out:
        assert set(c.token_ids) <= set(allowed)


def test_token_ids_outside_the_vocabulary_are_named(gen):
    for field, value in (("logit_bias", {10**6: 1.0}), ("allowed_token_ids", [1, 10**6])):
        with pytest.raises(unillm.InvalidParameterError, match=field):
            gen.generate("x", SP(max_tokens=2, **{field: value}))


@pytest.mark.parametrize("field,value", [("allowed_token_ids", [1, 2]), ("bad_words", ["a"])])
def test_bans_with_a_constraint_are_refused_with_the_reason(gen, field, value):
    with pytest.raises(unillm.UnsupportedParameterError, match="no token to continue"):
        gen.generate("x", SP(max_tokens=4, structured={"regex": "[a-z]+"}, **{field: value}))


def test_a_bias_with_a_constraint_moves_the_choice_within_it(gen):
    choices = ["alpha", "beta", "gamma"]
    picks = set()
    for choice in choices:
        first = gen.tokenizer.encode_plain(choice)[0]
        out = gen.generate("x", SP(max_tokens=8, temperature=0.0, logit_bias={first: 100.0},
                                   structured={"choice": choices}))
        assert out.text in choices and out.complete
        picks.add(out.text)
    assert len(picks) == 3


def test_bad_values_are_named_before_any_engine_runs():
    for bad in ({"logit_bias": {1: 101}}, {"logit_bias": {"one": 1}}, {"logit_bias": {1: float("inf")}},
                {"allowed_token_ids": []}, {"allowed_token_ids": [-1]}, {"bad_words": [" "]}):
        (field,) = bad
        with pytest.raises(unillm.InvalidParameterError, match=f"SamplingParams.{field}"):
            SP(**bad)
    assert SP(logit_bias={"12": -5}).logit_bias == {12: -5.0}  # OpenAI's string keys
    assert SP(logit_bias={}).logit_bias is None


def test_engines_without_a_logits_hook_refuse_with_the_reason(tiny_llama):
    fake = unillm.Generator(FakeEngine(), engine_name="fake", model="fake")
    with pytest.raises(unillm.UnsupportedParameterError, match="transformers, llamacpp and vllm"):
        fake.generate("x", SP(logit_bias={1: 1.0}))
    require_engine("ctranslate2")
    with unillm.load("ctranslate2", tiny_llama) as g:
        for field, value in (("logit_bias", {1: 1.0}), ("bad_words", ["a"])):
            with pytest.raises(unillm.UnsupportedParameterError,
                               match=f"{field} = .*no hook on the logits"):
                g.generate("x", SP(**{field: value}))


def test_params_with_token_rules_survive_pickling():
    """Ray replicas pickle parameters: a read-only bias must come back equal, and still
    read-only."""
    import pickle

    params = SP(logit_bias={2: 1.5, 7: -100.0}, allowed_token_ids=[2, 7], bad_words=["x"])
    back = pickle.loads(pickle.dumps(params))
    assert back == params and hash(back) == hash(params)
    with pytest.raises(TypeError, match="read-only"):
        back.logit_bias[3] = 1.0
