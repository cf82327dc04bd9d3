"""CTranslate2: a `choice` constraint, exactly, through `score_batch`.

CTranslate2 4.8's Python API has no hook on the logits while it generates, so no grammar can
mask them; but a choice needs none. Each choice is written with the tokenizer (no special
tokens; it must decode back to exactly the choice) and scored after the prompt with
`Generator.score_batch`, which returns the model's log-probability of each token:

- log P(choice) is the sum of its tokens' log-probabilities. Where the choice is a prefix of
  another one ("no" / "none"), the model must also decide to end there, as it does on the
  engines that mask each step: the probability of an end token (end-of-sequence or a stop
  token id) after it is included.
- `temperature` 0 picks the most likely choice (the first on a tie). Sampling draws a choice
  with probability proportional to P(choice)^(1/temperature), after `top_k`, `top_p` and
  `min_p` have filtered the choices by that probability (the same filters, over choices
  instead of tokens); sample i of a seeded request draws from `random.Random(seed + i)`, so a
  seeded result is reproducible (and `n` samples are those of seeds seed, seed+1, ...).
- The sample's tokens are the choice's followed by end-of-sequence, cut at `max_tokens`
  (finish_reason ``length``) or at a stop token id inside the choice (``stop``).

This is a choice among whole sequences, so its greedy pick can differ from the token-by-token
greedy pick of engines that mask each step (the model may prefer a first token whose
continuations are unlikely); both are valid, and this one is the more likely sequence.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

from ...engine import EngineRequest, EngineResult, EngineSequence, TokenEvent
from ...errors import InvalidParameterError
from ...params import SamplingParams

NO_LOGITS_HOOK = "CTranslate2 4.8 has no hook on the logits in its Python API"
NOTES = {  # why the engine refuses what it refuses (its Capabilities.notes)
    "structured": f"{NO_LOGITS_HOOK}: a choice is scored exactly with score_batch, any other "
    "constraint would need a mask at every step",
    "repetition_penalty+structured": "a choice is scored with score_batch, whose "
    "log-probabilities are the model's own, without penalties",
    **{name: NO_LOGITS_HOOK for name in ("logit_bias", "allowed_token_ids", "bad_words")},
}


def choice_ids(tokenizer: Any, choices: Sequence[str]) -> list[list[int]]:
    """Each choice's tokens; a choice the tokenizer does not write back exactly is refused
    (its score would be that of another text)."""
    out = []
    for text in choices:
        ids = list(tokenizer.encode_plain(text))
        if not ids or tokenizer.decode(ids) != text:
            raise InvalidParameterError("choice", text, "choices this model's tokenizer writes "
                                        "back exactly (CTranslate2 scores each choice's tokens)",
                                        owner="Structured")
        out.append(ids)
    return out


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


def _filtered(logps: list[float], p: SamplingParams) -> list[int]:
    """The choices left after top_k, top_p and min_p (by their tempered probability)."""
    order = sorted(range(len(logps)), key=lambda j: (-logps[j], j))
    if p.top_k is not None:
        order = order[:p.top_k]
    total = _logsumexp([logps[j] for j in order])
    probs = {j: math.exp(logps[j] - total) for j in order}
    if p.top_p < 1.0:
        kept, mass = [], 0.0
        for j in order:
            kept.append(j)
            mass += probs[j]
            if mass >= p.top_p:
                break
        order = kept
    if p.min_p > 0.0:
        best = probs[order[0]]
        order = [j for j in order if probs[j] >= p.min_p * best]
    return order


def pick(logps: list[float], p: SamplingParams, sample: int) -> int:
    """The index of the choice sample `sample` of a request takes (see the module doc)."""
    if p.is_greedy:
        return max(range(len(logps)), key=lambda j: (logps[j], -j))
    tempered = [lp / p.temperature for lp in logps]
    kept = _filtered(tempered, p)
    top = max(tempered[j] for j in kept)
    weights = [math.exp(tempered[j] - top) for j in kept]
    rng = random.Random(p.seed + sample) if p.seed is not None else random.Random()
    return rng.choices(kept, weights)[0]


def choose(engine: Any, requests: Sequence[EngineRequest]) -> list[EngineResult]:
    """Every request of a batch (one set of parameters) answered by scoring its choices."""
    p = requests[0].params
    choices = list(p.structured.choice or ())
    tok = engine.tokenizer
    ids = choice_ids(tok, choices)
    enders = sorted(engine._end_ids(p))
    eos = min(tok.eos_token_ids) if tok.eos_token_ids else enders[0]
    must_end = [any(o != c and o.startswith(c) for o in choices) for c in choices]

    rows: list[list[str]] = []
    spans: list[tuple[int, int, int]] = []  # (request, choice, ender or -1) per row
    for r, request in enumerate(requests):
        prompt = engine._token_strings(request)
        for j, choice in enumerate(ids):
            for end in (enders if must_end[j] else [-1]):
                tail = choice + ([end] if end >= 0 else [])
                rows.append(prompt + tok.token_strings(tail))
                spans.append((r, j, end))
    scored = engine._main().score_batch(rows, max_input_length=0,
                                        max_batch_size=engine.options.max_batch_size)
    per_choice: list[list[list[float]]] = [[[] for _ in choices] for _ in requests]
    for (r, j, end), result in zip(spans, scored):
        tail = len(ids[j]) + (1 if end >= 0 else 0)
        per_choice[r][j].append(sum(result.log_probs[-tail:]))

    out = []
    for r, request in enumerate(requests):
        logps = [_logsumexp(v) for v in per_choice[r]]
        record = {"score_batch": {"choices": choices, "log_probs": logps,
                                  "end_tokens_scored": enders if any(must_end) else []},
                  "temperature": p.temperature, "top_k": p.top_k, "top_p": p.top_p,
                  "min_p": p.min_p, "seed": p.seed, "max_tokens": p.max_tokens,
                  "structured": {"kind": "choice", "library": "ctranslate2.score_batch"}}
        samples = [_sequence(ids[pick(logps, p, i)], eos, p) for i in range(p.n)]
        out.append(EngineResult(samples, received=record))
    return out


def _sequence(choice: list[int], eos: int, p: SamplingParams) -> EngineSequence:
    """The sample's tokens: the choice, then end-of-sequence; cut at a stop token id inside
    the choice, and at max_tokens."""
    tokens = [*choice, eos]
    stop = next((i for i, t in enumerate(choice) if t in p.stop_token_ids), None)
    if stop is not None and stop < p.max_tokens:
        return EngineSequence(tokens[:stop + 1], "stop", choice[stop])
    if len(tokens) > p.max_tokens:
        return EngineSequence(tokens[:p.max_tokens], "length")
    return EngineSequence(tokens, "stop")


def stream_choices(engine: Any, requests: Sequence[EngineRequest]
                   ) -> Iterator[tuple[int, TokenEvent]]:
    """The chosen tokens of each request as one event per sample (they exist all at once)."""
    live = [r for r in requests if not r.aborted]
    results = dict(zip(map(id, live), choose(engine, live))) if live else {}
    for index, request in enumerate(requests):
        result = results.get(id(request))
        if result is None:
            continue
        for k, seq in enumerate(result.samples):
            yield index, TokenEvent(
                k, tuple(seq.token_ids), finish_reason=seq.finish_reason,
                stop_reason=seq.stop_reason,
                result=EngineResult(received=result.received) if k == 0 else None)
