"""skip_special_tokens on real engines: the core decodes their token ids, so `False` keeps the
special tokens a model samples (here <s>, </s>, <unk>, <pad> of the tiny Llama) in the text,
batch and stream alike, and `True` (the default) leaves them out."""

from __future__ import annotations

import pytest

import unillm
from unillm import SamplingParams as SP

from ..conftest import require_engine

SPECIAL = ("<s>", "</s>", "<unk>", "<pad>")


@pytest.fixture(scope="module", params=["transformers", "ctranslate2", "llamacpp"])
def gen(request, tiny_llama):
    require_engine(request.param)
    with unillm.load(request.param, tiny_llama) as generator:
        yield generator


def _with_special_tokens(gen: unillm.Generator) -> SP:
    """Seeded, nearly uniform sampling that produces a special token before the end (the tiny
    model is random: 4 of its 2048 tokens are special); the first seed that does."""
    for seed in range(8):
        params = SP(max_tokens=100, temperature=100.0, ignore_eos=True, seed=seed, n=4)
        out = gen.generate("the", params)
        if any(i < 4 for s in out.samples for i in s.token_ids):
            return params
    pytest.fail(f"{gen.engine_name}: no seed in 0..7 samples a special token")


def test_false_keeps_the_special_tokens_true_leaves_them_out(gen):
    params = _with_special_tokens(gen)
    skipped = gen.generate("the", params)
    kept = gen.generate("the", params.replace(skip_special_tokens=False))
    tok = gen.tokenizer
    found = False
    for a, b in zip(skipped.samples, kept.samples):
        assert a.token_ids == b.token_ids  # the field changes the text, never the sampling
        assert a.text == tok.decode(a.token_ids)
        assert b.text == tok.decode_with_special(b.token_ids)
        assert not any(m in a.text for m in SPECIAL)
        found |= any(m in b.text for m in SPECIAL)
    assert found
    streamed = ["" for _ in kept.samples]
    for chunk in gen.stream("the", params.replace(skip_special_tokens=False)):
        streamed[chunk.index] += chunk.text
    assert streamed == [s.text for s in kept.samples]
