"""unillm's scores are lm-evaluation-harness's: the same pairs through lm-eval's own Hugging Face
model (HFLM) and through `Generator.score` on the transformers engine give the same numbers,
so the tokenization convention (trailing spaces, start token, empty contexts, windows) is
lm-eval's, not an approximation of it."""

from __future__ import annotations

import pytest

import unillm
from unillm.testing import build_test_model

from ..conftest import require_engine

PAIRS = [
    ("The quick brown fox", " jumps over"),
    ("Question: is it? Answer: ", "yes"),  # the trailing space moves to the continuation
    ("", "Hello there"),  # an empty context: the start token
    ("def f(x):\n", "    return x"),
    ("Le café est", " très chaud, 東京 🙂"),
]


@pytest.fixture(scope="module", params=["llama-tiny", "gpt2-tiny"])
def both(request):
    require_engine("transformers")
    huggingface = pytest.importorskip("lm_eval.models.huggingface",
                                      reason="lm-eval is not installed (pip install 'unillm[eval]')")
    path = str(build_test_model(request.param))
    lm = huggingface.HFLM(pretrained=path, device="cpu", dtype="float32", batch_size=4)
    gen = unillm.load("transformers", path, dtype="float32")
    yield request.param, lm, gen
    gen.close()


def _instances(kind, args):
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def test_loglikelihood_equals_lm_evals(both):
    _, lm, gen = both
    theirs = lm.loglikelihood(_instances("loglikelihood", PAIRS))
    ours = gen.score(PAIRS)
    for (logprob, greedy), score in zip(theirs, ours):
        assert score.logprob == pytest.approx(logprob, abs=1e-4)
        assert score.is_greedy == greedy


def test_is_greedy_agrees_on_a_greedy_continuation(both):
    _, lm, gen = both
    out = gen.generate("The quick brown fox", {"max_tokens": 6, "temperature": 0,
                                               "ignore_eos": True})
    pair = ("The quick brown fox", out.text)
    (logprob, greedy), = lm.loglikelihood(_instances("loglikelihood", [pair]))
    score = gen.score(pair)
    assert score.logprob == pytest.approx(logprob, abs=1e-4)
    assert score.is_greedy == greedy


def test_rolling_equals_lm_evals(both):
    preset, lm, gen = both
    texts = ["hello world " * 50, "A short one."]
    theirs = lm.loglikelihood_rolling(_instances("loglikelihood_rolling", [(t,) for t in texts]))
    if preset == "gpt2-tiny":  # the tokenizer adds no start token: the same tokens scored
        ours = gen.score_rolling(texts)
    else:
        # lm-eval's HFLM tokenizes the text with the BOS the tokenizer adds, then puts its BOS
        # prefix before that: it also scores that BOS (after a BOS), which unillm does not
        # (it scores the text's own tokens after the start token; docs/scoring.md). Given the
        # same ids, the numbers are the same.
        ours = gen.score_rolling([{"prompt_token_ids": gen.tokenizer.encode(t)} for t in texts])
        plain = gen.score_rolling(texts)
        assert [s.scored for s in plain] == [s.scored - 1 for s in ours]
    for logprob, score in zip(theirs, ours):
        assert score.logprob == pytest.approx(logprob, abs=1e-3)


def test_rolling_windows_are_lm_evals_windows(both):
    """A text longer than the context: the same windows, each scored alike. (Each window goes
    through lm-eval on its own: batched together, lm-eval 0.4.13's HFLM scores the last,
    shorter-continuation window differently from a plain forward pass of it.)"""
    preset, lm, gen = both
    from lm_eval import utils

    ids = lm.tok_encode("x" * 3000, add_special_tokens=False)
    windows = [utils.make_disjoint_window(w) for w in utils.get_rolling_token_windows(
        token_list=ids, prefix_token=lm.prefix_token_id, max_seq_len=lm.max_length - 1,
        context_len=1)]
    theirs = sum(lm._loglikelihood_tokens([(None, a, b)], disable_tqdm=True)[0][0]
                 for a, b in windows)
    ours = gen.score_rolling("x" * 3000)
    assert ours.windows == len(windows) >= 2
    assert ours.logprob == pytest.approx(theirs, abs=1e-2)
