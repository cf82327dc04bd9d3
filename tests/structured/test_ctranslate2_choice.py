"""CTranslate2's `choice`: each choice scored after the prompt with `score_batch`, the pick made
with unillm's semantics (unillm/backends/ctranslate2/choice.py), checked against the float32
model's own log-probabilities computed here with transformers."""

from __future__ import annotations

import functools
import math

import pytest

import unillm
from unillm import SamplingParams as SP

from ..conftest import require_engine

CHOICES = ["positive", "negative", "neutral", "no", "none"]  # "no" is a prefix of "none"
PROMPTS = ["The answer is", "über", "def f(x):"]


@pytest.fixture(scope="module")
def gen(tiny_llama):
    require_engine("ctranslate2")
    g = unillm.load("ctranslate2", tiny_llama, compute_type="float32")
    yield g
    g.close()


@functools.lru_cache(maxsize=1)
def _model(path: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(path))


def reference_logps(path: str, prompt: str) -> list[float]:
    """log P(choice | prompt) by the float32 model; with the end-of-sequence token after a
    choice that another choice extends (the model must choose to end there)."""
    import torch

    model, tok = _model(path)
    prompt_ids = tok.encode(prompt)
    out = []
    for choice in CHOICES:
        tail = tok.encode(choice, add_special_tokens=False)
        if any(o != choice and o.startswith(choice) for o in CHOICES):
            tail = tail + [tok.eos_token_id]
        ids = prompt_ids + tail
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
        out.append(sum(float(logp[len(prompt_ids) - 1 + i, t]) for i, t in enumerate(tail)))
    return out


def test_greedy_picks_the_most_likely_choice(gen, tiny_llama):
    outs = gen.generate(PROMPTS, SP(max_tokens=16, temperature=0.0,
                                    structured={"choice": CHOICES}))
    for prompt, out in zip(PROMPTS, outs):
        expected = reference_logps(tiny_llama, prompt)
        scored = out.engine_params["score_batch"]["log_probs"]
        assert scored == pytest.approx(expected, abs=2e-3)
        assert out.text == CHOICES[max(range(len(CHOICES)), key=lambda j: expected[j])]
        assert out.finish_reason == "stop" and out.complete is True
        assert out.token_ids[-1] in gen.tokenizer.eos_token_ids


def test_sampling_is_seeded_and_follows_the_tempered_probabilities(gen, tiny_llama):
    params = SP(max_tokens=16, temperature=8.0, seed=11, n=4, structured={"choice": CHOICES})
    first = gen.generate(PROMPTS[1], params)
    again = gen.generate(PROMPTS[1], params)
    assert [s.text for s in first.samples] == [s.text for s in again.samples]
    for i, sample in enumerate(first.samples):  # sample i is the seed + i draw
        alone = gen.generate(PROMPTS[1], params.replace(n=1, seed=11 + i))
        assert alone.text == sample.text
    texts = {gen.generate(PROMPTS[1], params.replace(n=1, seed=s)).text for s in range(40)}
    assert len(texts) > 1 and texts <= set(CHOICES)  # hot enough to pick several
    # top_k=1 keeps the most likely choice only: greedy, whatever the seed
    greedy = gen.generate(PROMPTS[1], SP(max_tokens=16, temperature=0.0,
                                         structured={"choice": CHOICES})).text
    for seed in range(5):
        assert gen.generate(PROMPTS[1], params.replace(n=1, seed=seed, top_k=1)).text == greedy


def test_the_filters_apply_to_the_choices(gen, tiny_llama):
    logps = reference_logps(tiny_llama, PROMPTS[0])
    probs = [math.exp(v) for v in logps]
    order = sorted(range(len(CHOICES)), key=lambda j: -probs[j])
    params = SP(max_tokens=16, temperature=1.0, top_k=2, structured={"choice": CHOICES})
    seen = {gen.generate(PROMPTS[0], params.replace(seed=s)).text for s in range(30)}
    assert seen <= {CHOICES[order[0]], CHOICES[order[1]]}


def test_streamed_text_equals_batch_text(gen):
    params = SP(max_tokens=16, temperature=1.0, seed=3, structured={"choice": CHOICES})
    whole = gen.generate(PROMPTS[2], params)
    stream = gen.stream(PROMPTS[2], params)
    assert "".join(c.text for c in stream) == whole.text
    assert stream.completion.finish_reason == whole.finish_reason
    assert stream.completion.complete is whole.complete is True


def test_max_tokens_cuts_the_choice_and_says_so(gen):
    out = gen.generate(PROMPTS[0], SP(max_tokens=1, temperature=0.0,
                                      structured={"choice": ["positive", "negative"]}))
    assert out.finish_reason == "length" and len(out.token_ids) == 1
    assert out.complete is False and "positive negative".find(out.text) >= 0


def test_everything_else_is_refused_with_the_reason(gen):
    with pytest.raises(unillm.UnsupportedParameterError, match="exact here: choice"):
        gen.generate("x", SP(structured={"json_schema": {"type": "object"}}))
    with pytest.raises(unillm.UnsupportedParameterError, match="without penalties"):
        gen.generate("x", SP(repetition_penalty=1.3, structured={"choice": CHOICES}))
