"""Scoring on CTranslate2: `Generator.score_batch`, which returns each token's exact
log-probability given the tokens before it, and `Generator.forward_batch` where more is asked.

`score_batch` gives the scored tokens' own log-probabilities only, which is all a perplexity
needs (`ScoreRequest.top` None). Whether a token is the most likely one (lm-eval's is_greedy),
its rank and the top alternatives need the whole distribution at each position:
`forward_batch(..., return_log_probs=True)` returns it, [rows, positions, vocabulary], so its
rows are grouped under a budget of positions x vocabulary per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...engine import ScoreRequest, ScoreResult
from ...errors import InvalidPromptError
from ...results import TokenScore
from ...scoring import padded_chunks

FLOATS_PER_CALL = 64 * 1024 * 1024
"""Most rows x positions x vocabulary floats one forward_batch call returns (256 MiB)."""


def score(engine: Any, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
    """`Engine.score` for `CTranslate2Engine` (see the module docstring)."""
    generator = engine._main()
    sequences = [list(r.context_ids) + list(r.continuation_ids) for r in requests]
    for seq in sequences:
        bad = [t for t in seq if not 0 <= t < len(engine.vocabulary)]
        if bad:
            raise InvalidPromptError(f"token id {bad[0]} is outside this model's vocabulary "
                                     f"(0..{len(engine.vocabulary) - 1})")
    out: list[ScoreResult | None] = [None] * len(requests)
    plain = [i for i, r in enumerate(requests) if r.top is None]
    if plain:
        tokens = [[engine.vocabulary[t] for t in sequences[i]] for i in plain]
        options = {"max_batch_size": engine.options.max_batch_size, "max_input_length": 0}
        for i, result in zip(plain, generator.score_batch(tokens, **options)):
            n = len(requests[i].continuation_ids)
            logprobs = list(result.log_probs)[-n:]
            out[i] = ScoreResult(
                [TokenScore(float(lp), t) for lp, t in zip(logprobs, requests[i].continuation_ids)],
                {"method": "score_batch", **options})
    detailed = [i for i, r in enumerate(requests) if r.top is not None]
    vocab = len(engine.vocabulary)  # forward_batch returns rows x length x vocab floats
    for chunk in padded_chunks(detailed, lambda i: len(sequences[i]) * vocab, FLOATS_PER_CALL):
        _forward(generator, [requests[i] for i in chunk], [sequences[i] for i in chunk], chunk, out)
    return out  # type: ignore[return-value]


def _forward(generator: Any, requests: list[ScoreRequest], sequences: list[list[int]],
             indices: list[int], out: list[ScoreResult | None]) -> None:
    import numpy as np

    logprobs = np.asarray(generator.forward_batch([s[:-1] for s in sequences],
                                                  return_log_probs=True))
    received = {"method": "forward_batch", "return_log_probs": True, "rows": len(requests)}
    for row, (request, seq, index) in enumerate(zip(requests, sequences, indices)):
        n = len(request.continuation_ids)
        start = len(seq) - 1 - n  # position t predicts token t + 1
        tokens = []
        for k, token in enumerate(request.continuation_ids):
            dist = logprobs[row, start + k]
            lp = float(dist[token])
            top: dict[int, float] = {}
            if request.top:
                best = np.argpartition(-dist, request.top - 1)[:request.top]
                top = {int(i): float(dist[i]) for i in best[np.argsort(-dist[best])]}
            tokens.append(TokenScore(lp, token, greedy=int(dist.argmax()) == token,
                                     rank=int((dist > lp).sum()) + 1, top=top))
        out[index] = ScoreResult(tokens, dict(received))
