"""Scoring on vLLM: its `prompt_logprobs`, the log-probability of every prompt token.

A scored sequence is a one-token greedy generation whose prompt is the whole sequence, asked
for ``prompt_logprobs`` (so it may be one token shorter than the model's context: vLLM refuses
a prompt that leaves no room for that token; `VllmEngine.score_context_length`) (vLLM computes them from the raw logits, before any processing); the
continuation's tokens are read from the prompt's. vLLM's entry for a position holds the prompt
token (with its rank: 1 is the most likely) and the k most likely tokens. The same conversion
gives `Completion.prompt_logprobs` natively.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..engine import EngineRequest, EngineResult, ScoreRequest, ScoreResult
from ..params import SamplingParams
from ..results import TokenLogprob, TokenScore


def prompt_logprobs(output: Any, top: int | None) -> list[TokenLogprob | None] | None:
    """vLLM's `RequestOutput.prompt_logprobs` as unillm's (None first), or None."""
    entries = getattr(output, "prompt_logprobs", None)
    if top is None or not entries:  # a stream's later outputs carry an empty list
        return None
    out: list[TokenLogprob | None] = []
    for token, entry in zip(output.prompt_token_ids, entries):
        if entry is None:
            out.append(None)
            continue
        chosen = entry[token]
        alternatives = {int(t): float(lp.logprob) for t, lp in entry.items()
                        if lp.rank is not None and lp.rank <= top}
        out.append(TokenLogprob(int(token), float(chosen.logprob), alternatives, chosen.rank))
    return out


def requests_for(requests: Sequence[ScoreRequest]) -> list[EngineRequest]:
    """One greedy token after each whole sequence, with its prompt's logprobs."""
    return [EngineRequest(SamplingParams(max_tokens=1, temperature=0.0,
                                         prompt_logprobs=r.top or 0),
                          prompt_token_ids=list(r.context_ids) + list(r.continuation_ids))
            for r in requests]


def results_of(requests: Sequence[ScoreRequest], done: Sequence[EngineResult]) -> list[ScoreResult]:
    out = []
    for request, result in zip(requests, done):
        entries = (result.prompt_logprobs or [])[len(request.context_ids):]
        tokens = []
        for lp in entries:
            if request.top is None:
                tokens.append(TokenScore(lp.logprob, lp.token_id))
            else:
                tokens.append(TokenScore(lp.logprob, lp.token_id, greedy=lp.rank == 1,
                                         rank=lp.rank, top=dict(lp.top) if request.top else {}))
        received = {**result.received, "prompt_logprobs": request.top or 0, "method":
                    "prompt_logprobs"}
        out.append(ScoreResult(tokens, received))
    return out


def score(engine: Any, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
    return results_of(requests, engine.generate(requests_for(requests)))


async def ascore(engine: Any, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
    return results_of(requests, await engine.agenerate(requests_for(requests)))
