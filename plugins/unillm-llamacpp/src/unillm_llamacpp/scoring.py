"""Scoring with llama.cpp: every position's logits of the prompt batch.

The model is loaded with ``logits_all=False`` (generation needs the last position only, and
llama-cpp-python would otherwise copy every position's logits into Python after each decode).
A scored sequence is therefore decoded through llama-cpp-python's batch directly, with every
position marked as an output (llama.cpp sizes its output buffer per batch), `n_batch` tokens
per `llama_decode`, and the logits of each position that predicts a continuation token are
read with `llama_get_logits_ith`. Log-probabilities are computed in float64 from those logits:
the model's raw distribution, before any sampler.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from unillm import InvalidPromptError, ScoreRequest, ScoreResult, TokenScore


def score(engine: Any, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
    """`Engine.score` for `LlamaCppEngine`: one sequence after another."""
    return [_score_one(engine, r) for r in requests]


def _score_one(engine: Any, request: ScoreRequest) -> ScoreResult:
    import numpy as np

    lib, llm = engine._lib, engine.llm
    seq = list(request.context_ids) + list(request.continuation_ids)
    engine._check_prompt(seq)
    fed = seq[:-1]
    if len(fed) > engine.context_length:
        raise InvalidPromptError(f"{len(seq)} tokens do not fit the context of "
                                 f"{engine.context_length} tokens")
    first = len(request.context_ids) - 1  # the position that predicts the first scored token
    n_batch = llm.n_batch
    tokens: list[TokenScore] = []
    llm.reset()
    llm._ctx.kv_cache_seq_rm(-1, 0, -1)
    try:
        for start in range(0, len(fed), n_batch):
            chunk = fed[start:start + n_batch]
            llm._batch.set_batch(batch=chunk, n_past=start, logits_all=True)
            llm._ctx.decode(llm._batch)
            for j in range(len(chunk)):
                position = start + j
                if position < first:
                    continue
                ptr = lib.llama_get_logits_ith(llm._ctx.ctx, j)
                logits = np.ctypeslib.as_array(ptr, shape=(engine.n_vocab,)).astype(np.float64)
                tokens.append(_token(logits, seq[position + 1], request.top))
    finally:
        llm.reset()  # the next generation starts from an empty cache
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
    return ScoreResult(tokens, {"method": "llama_decode", "logits": "every position",
                                "n_batch": n_batch})


def _token(logits: Any, token: int, top: int | None) -> TokenScore:
    import numpy as np

    shifted = logits - logits.max()
    lse = math.log(float(np.exp(shifted).sum()))
    logprob = float(shifted[token] - lse)
    if top is None:
        return TokenScore(logprob, token)
    alternatives: dict[int, float] = {}
    if top:
        best = np.argpartition(-shifted, top - 1)[:top]
        best = best[np.argsort(-shifted[best])]
        alternatives = {int(i): float(shifted[i] - lse) for i in best}
    return TokenScore(logprob, token, greedy=int(logits.argmax()) == token,
                      rank=int((shifted > shifted[token]).sum()) + 1, top=alternatives)
