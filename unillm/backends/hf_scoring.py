"""Scoring on the transformers engine: one forward pass per batch of sequences, no generate().

Rows are left-padded with explicit position ids (so a model with absolute position embeddings,
GPT-2, sees the same positions as unpadded), which puts every row's continuation at the end of
the batch: with ``logits_to_keep`` the model computes the vocabulary projection for those
positions only, not for every context token. Rows are grouped, shortest first, under a budget
of tokens per forward pass, so a long rolling window does not share a pass with many others.
Log-probabilities are taken in float32 whatever the model's dtype.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from ..engine import EngineRequest, ScoreRequest, ScoreResult
from ..results import TokenLogprob, TokenScore
from ..scoring import padded_chunks

TOKENS_PER_PASS = 8192
"""Most (rows x padded width) tokens in one forward pass: bounds the memory of a pass."""


def prompt_logprobs(engine: Any, requests: Sequence[EngineRequest]) -> list[Any]:
    """`SamplingParams.prompt_logprobs` natively: each request's prompt scored (None first),
    or None for every request when they were not asked for (one batch shares its params)."""
    top = requests[0].params.prompt_logprobs if requests else None
    if top is None:
        return [None] * len(requests)
    ids = [list(r.prompt_token_ids or ()) for r in requests]
    asked = [i for i, p in enumerate(ids) if len(p) > 1]
    scored = score(engine, [ScoreRequest(tuple(ids[i][:1]), tuple(ids[i][1:]), top=top)
                            for i in asked])
    out: list[Any] = [[None] for _ in requests]
    for i, result in zip(asked, scored):
        out[i] += [TokenLogprob(t.token_id, t.logprob, dict(t.top), t.rank)  # type: ignore[arg-type]
                   for t in result.tokens]
    return out


def _length(request: ScoreRequest) -> int:
    """Tokens fed to the model: all but the last (whose successor is never scored)."""
    return len(request.context_ids) + len(request.continuation_ids) - 1


def score(engine: Any, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
    """`Engine.score` for `TransformersEngine` (see the module docstring)."""
    model = engine.model_obj
    keeps = "logits_to_keep" in inspect.signature(model.forward).parameters
    out: list[ScoreResult | None] = [None] * len(requests)
    for chunk in padded_chunks(range(len(requests)), lambda i: _length(requests[i]),
                               TOKENS_PER_PASS, engine.options.max_batch_size):
        rows = [requests[i] for i in chunk]
        for i, result in zip(chunk, _score_rows(engine, rows, keeps)):
            out[i] = result
    return out  # type: ignore[return-value]


def _score_rows(engine: Any, rows: Sequence[ScoreRequest], keeps: bool) -> list[ScoreResult]:
    torch = engine.torch
    seqs = [list(r.context_ids) + list(r.continuation_ids) for r in rows]
    width = max(len(s) - 1 for s in seqs)
    ids = torch.full((len(rows), width), engine.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        fed = seq[:-1]
        ids[row, width - len(fed):] = torch.tensor(fed, dtype=torch.long)
        mask[row, width - len(fed):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    keep = max(len(r.continuation_ids) for r in rows)
    kwargs: dict[str, Any] = {"logits_to_keep": keep} if keeps else {}
    with torch.inference_mode():
        logits = engine.model_obj(
            input_ids=ids.to(engine.device), attention_mask=mask.to(engine.device),
            position_ids=positions.to(engine.device), use_cache=False, **kwargs,
        ).logits
        logits = logits[:, -keep:, :]
        received = {"method": "forward", "rows": len(rows), "width": width,
                    "logits_to_keep": keep if keeps else None,
                    "dtype": str(logits.dtype).replace("torch.", "")}
        results = []
        for row, request in enumerate(rows):
            n = len(request.continuation_ids)
            row_logits = logits[row, keep - n:, :].float()
            results.append(ScoreResult(_token_scores(torch, row_logits, request), dict(received)))
    return results


def _token_scores(torch: Any, logits: Any, request: ScoreRequest) -> list[TokenScore]:
    """Per continuation token: log-probability, and with `top` also greedy, rank and the top
    alternatives (row i of `logits` predicts continuation token i)."""
    logprobs = torch.log_softmax(logits, dim=-1)
    targets = torch.tensor(request.continuation_ids, dtype=torch.long, device=logits.device)
    chosen = logprobs.gather(-1, targets[:, None])[:, 0]
    if request.top is None:
        return [TokenScore(float(lp), int(t)) for lp, t in zip(chosen.tolist(),
                                                               request.continuation_ids)]
    greedy = (logits.argmax(-1) == targets).tolist()
    ranks = ((logprobs > chosen[:, None]).sum(-1) + 1).tolist()
    tops: list[dict[int, float]] = [{} for _ in request.continuation_ids]
    if request.top:
        values, indices = logprobs.topk(request.top, dim=-1)
        tops = [dict(zip(i, v)) for i, v in zip(indices.tolist(), values.tolist())]
    return [TokenScore(lp, t, greedy=g, rank=r, top=top) for lp, t, g, r, top in
            zip(chosen.tolist(), request.continuation_ids, greedy, ranks, tops)]
