"""Scoring: the log-probability of given text, on any engine that can (`Capabilities.score`).

What `Generator.score`, `Generator.score_rolling` and `SamplingParams.prompt_logprobs` share,
written once: turning texts into `ScoreRequest`s, and the engine's `ScoreResult`s into `Score`,
`RollingScore` and `Scores`. The engine call itself (sync or async) is the only part the
`Generator` twins.

Tokenization follows lm-evaluation-harness, so that unillm's numbers and lm-eval's agree:

- A pair (context, continuation): whitespace at the end of the context moves to the start of
  the continuation (``"Q: 2+2 = "``, ``"4"`` scores ``" 4"``); the context is tokenized as a
  prompt is (`Tokenizer.encode`: with the model's start token, e.g. BOS, where its tokenizer
  adds one), the whole text likewise, and the continuation's tokens are the whole text's tokens
  after the context's: ``whole[len(encode(context)):]``. So the scored tokens are those the
  model reads after that context, as in lm-eval's ``_encode_pair``.
- An empty context is the model's start token(s) alone; where the tokenizer adds none (GPT-2),
  its BOS token if it names one, else its end-of-sequence token (lm-eval's
  ``prefix_token_id``).
- A rolling score (`score_rolling`) scores every token of the text (without start token) after
  that same start, in windows of at most the context length: the first window has the start
  token as its context, each later one predicts up to context_length - 1 new tokens with the
  text just before them as context (lm-eval's ``get_rolling_token_windows`` with a context of
  one token, then ``make_disjoint_window``).
- Text engines (HTTP servers) receive the two texts and tokenize them their own way: the
  continuation's tokens are the server's tokens of ``context + continuation`` that start at or
  after the end of the context.

Every log-probability is the model's raw distribution (no temperature or other sampling
processing), as lm-eval and vLLM's ``prompt_logprobs`` define it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .engine import Engine, ScoreRequest, ScoreResult
from .errors import ContextLengthError, EngineError, InvalidParameterError, InvalidPromptError
from .planning import check_score
from .results import RollingScore, Score, Scores, ScoreTiming, TokenLogprob

TextOrIds = str | Mapping[str, Any]
Pair = tuple[TextOrIds, TextOrIds]


# -- tokenization (token-id engines) -------------------------------------------------------
def start_ids(tokenizer: Any) -> list[int]:
    """The ids the tokenizer puts before any prompt (BOS), found by encoding the empty text."""
    return list(tokenizer.encode(""))


def prefix_ids(tokenizer: Any) -> list[int]:
    """What an empty context is: the start token(s) the tokenizer adds, else its start token
    (`bos_token_id`) where it has one, else its end-of-sequence token (lm-eval's rule)."""
    start = start_ids(tokenizer)
    if start:
        return start
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None:
        return [int(bos)]
    if not tokenizer.eos_token_ids:
        raise InvalidPromptError("the tokenizer adds no start token and has no end-of-sequence "
                                 "token: nothing can stand for an empty context")
    return [min(tokenizer.eos_token_ids)]


def text_ids(tokenizer: Any, text: str, start: Sequence[int]) -> list[int]:
    """The ids of `text` without the start token(s) the tokenizer adds."""
    ids = list(tokenizer.encode(text))
    return ids[len(start):] if start and ids[:len(start)] == list(start) else ids


def _ids_of(value: TextOrIds, what: str) -> list[int] | None:
    """Token ids given as ``{"prompt_token_ids": [...]}``; None for text."""
    if isinstance(value, str):
        return None
    if isinstance(value, Mapping) and "prompt_token_ids" in value:
        return [int(i) for i in value["prompt_token_ids"]]
    raise InvalidPromptError(f"a {what} is a string or {{'prompt_token_ids': [...]}}, not "
                             f"{type(value).__name__}")


def split_space(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's rule: whitespace ending the context belongs to the continuation."""
    stripped = context.rstrip()
    return stripped, context[len(stripped):] + continuation


def pair_ids(tokenizer: Any, context: TextOrIds, continuation: TextOrIds) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) of one pair, by the module's convention."""
    ctx_ids, cont_ids = _ids_of(context, "context"), _ids_of(continuation, "continuation")
    start = start_ids(tokenizer)
    if ctx_ids is not None and not ctx_ids:
        raise InvalidPromptError("a context given as token ids needs at least one token (the "
                                 "start token): nothing precedes the first continuation token")
    if ctx_ids is None and cont_ids is None:
        ctx_text, cont_text = split_space(context, continuation)  # type: ignore[arg-type]
        if not ctx_text:
            ctx_ids, cont_ids = prefix_ids(tokenizer), text_ids(tokenizer, cont_text, start)
        else:
            ctx_ids = list(tokenizer.encode(ctx_text))
            cont_ids = list(tokenizer.encode(ctx_text + cont_text))[len(ctx_ids):]
    else:
        if ctx_ids is None:
            ctx_ids = list(tokenizer.encode(context)) if context else prefix_ids(tokenizer)  # type: ignore[arg-type]
        if cont_ids is None:
            cont_ids = text_ids(tokenizer, continuation, start)  # type: ignore[arg-type]
    if not cont_ids:
        raise InvalidPromptError("the continuation is empty once tokenized: there is nothing "
                                 "to score")
    return ctx_ids, cont_ids


def rolling_windows(ids: Sequence[int], prefix: Sequence[int],
                    size: int) -> list[tuple[list[int], list[int]]]:
    """(context, continuation) windows that score every token of `ids` once, each window at
    most `size` tokens long (see the module docstring: lm-eval's rolling windows)."""
    if not ids:
        return []
    if size - len(prefix) < 1:
        raise InvalidParameterError("window", size, f"at least {len(prefix) + 1} tokens (the "
                                    "start token and one token to score)", owner="score_rolling")
    first = min(len(ids), size - len(prefix))
    windows = [(list(prefix), list(ids[:first]))]
    done = first
    while done < len(ids):
        end = done + min(len(ids) - done, size - 1)
        windows.append((list(ids[max(0, end - size):done]), list(ids[done:end])))
        done = end
    return windows


# -- a prepared scoring call ---------------------------------------------------------------
@dataclass
class _Item:
    """One text of the call: its requests (rolling: one per window) and what the caller gets
    besides the scores."""

    requests: list[int]
    context_tokens: int | None = None
    truncated: int = 0


@dataclass
class ScoreCall:
    """Every `ScoreRequest` of one call, and how the results become the caller's answer."""

    engine_name: str
    rolling: bool
    requests: list[ScoreRequest]
    items: list[_Item]

    @property
    def input_tokens(self) -> int | None:
        if any(r.context is not None for r in self.requests):
            return None  # text engines: the server's count, which it does not report here
        return sum(len(r.context_ids) + len(r.continuation_ids) for r in self.requests)

    def assemble(self, results: Sequence[ScoreResult], elapsed: float) -> Scores:
        if len(results) != len(self.requests):
            raise EngineError(self.engine_name, f"score() returned {len(results)} results for "
                              f"{len(self.requests)} requests")
        for request, result in zip(self.requests, results):
            if not isinstance(result, ScoreResult):
                raise EngineError(self.engine_name, "score() must return one ScoreResult per "
                                  f"request, got {type(result).__name__}")
            want = len(request.continuation_ids)
            if request.context is None and len(result.tokens) != want:
                raise EngineError(self.engine_name, f"score() returned {len(result.tokens)} "
                                  f"token scores for a continuation of {want} tokens")
        out = [self._rolling(item, results) if self.rolling else self._pair(item, results)
               for item in self.items]
        scored = sum(t.logprob is not None for r in results for t in r.tokens)
        return Scores(out, ScoreTiming(elapsed, len(self.items), scored, self.input_tokens))

    def _pair(self, item: _Item, results: Sequence[ScoreResult]) -> Score:
        result = results[item.requests[0]]
        tokens = tuple(result.tokens)
        missing = [i for i, t in enumerate(tokens) if t.logprob is None]
        if missing or not tokens:
            raise EngineError(self.engine_name, "the engine did not score every continuation "
                              f"token (token {missing[0] if missing else 0} has no "
                              "log-probability; a server scores no token that nothing "
                              "precedes): give a non-empty context")
        greedy = [t.greedy for t in tokens]
        is_greedy = None if any(g is None for g in greedy) else all(greedy)
        return Score(sum(t.logprob for t in tokens), is_greedy, tokens,  # type: ignore[misc]
                     item.context_tokens, item.truncated, dict(result.received))

    @staticmethod
    def _rolling(item: _Item, results: Sequence[ScoreResult]) -> RollingScore:
        tokens = tuple(t for i in item.requests for t in results[i].tokens)
        total = sum(t.logprob for t in tokens if t.logprob is not None)
        return RollingScore(total, tokens, len(item.requests))


def _limit(engine: Engine) -> int | None:
    """Most tokens a scored sequence may have: the context length, or less where an engine
    says so (`score_context_length`: vLLM's scoring generates one token after the text)."""
    return getattr(engine, "score_context_length", None) or engine.context_length


def prepare_pairs(engine: Engine, engine_name: str, pairs: Sequence[Pair], top: int,
                  truncate: bool) -> ScoreCall:
    """The requests of `Generator.score`: one per (context, continuation) pair."""
    check_score(engine.capabilities, engine_name)
    if top < 0 or top > 20:
        raise InvalidParameterError("top_logprobs", top, "an integer with 0 <= top_logprobs <= 20",
                                    owner="score")
    requests, items = [], []
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise InvalidPromptError("score() takes (context, continuation) pairs, not "
                                     f"{type(pair).__name__}")
        context, continuation = pair
        if not engine.capabilities.token_ids:
            if not (isinstance(context, str) and isinstance(continuation, str)):
                raise InvalidPromptError(f"engine {engine_name!r} scores text, not token ids")
            ctx, cont = split_space(context, continuation)
            if not cont:
                raise InvalidPromptError("the continuation is empty: there is nothing to score")
            items.append(_Item([len(requests)]))
            requests.append(ScoreRequest(context=ctx, continuation=cont, top=top))
            continue
        ctx_ids, cont_ids = pair_ids(engine.tokenizer, context, continuation)
        cut = 0
        limit = _limit(engine)
        if limit is not None and len(ctx_ids) + len(cont_ids) > limit:
            keep = limit - len(cont_ids)
            if not truncate or keep < 1:
                raise ContextLengthError(len(ctx_ids) + len(cont_ids), 0, limit)
            cut = len(ctx_ids) - keep
            ctx_ids = ctx_ids[cut:]  # lm-eval's left truncation
        items.append(_Item([len(requests)], len(ctx_ids), cut))
        requests.append(ScoreRequest(tuple(ctx_ids), tuple(cont_ids), top=top))
    return ScoreCall(engine_name, False, requests, items)


def prepare_rolling(engine: Engine, engine_name: str, texts: Sequence[TextOrIds],
                    window: int | None) -> ScoreCall:
    """The requests of `Generator.score_rolling`: one per window of each text."""
    check_score(engine.capabilities, engine_name)
    requests, items = [], []
    tok = engine.tokenizer
    token_ids = engine.capabilities.token_ids
    size = window or _limit(engine)
    limit = _limit(engine)
    if window is not None and limit is not None and window > limit:
        raise InvalidParameterError("window", window, f"at most the model's context length "
                                    f"({limit} tokens to score)", owner="score_rolling")
    for text in texts:
        ids = _ids_of(text, "text")
        if not token_ids:
            if ids is not None:
                raise InvalidPromptError(f"engine {engine_name!r} scores text, not token ids")
            if window is not None:
                raise InvalidParameterError("window", window, "None on a text engine (its "
                                            "server tokenizes, so unillm cannot cut windows)",
                                            owner="score_rolling")
            first = len(requests)
            if text:
                requests.append(ScoreRequest(context="", continuation=text))  # type: ignore[arg-type]
            items.append(_Item(list(range(first, len(requests)))))
            continue
        start = start_ids(tok)
        ids = ids if ids is not None else text_ids(tok, text, start)  # type: ignore[arg-type]
        prefix = prefix_ids(tok)
        windows = rolling_windows(ids, prefix, size) if size else (
            [(prefix, ids)] if ids else [])
        first = len(requests)
        requests.extend(ScoreRequest(tuple(c), tuple(t)) for c, t in windows)
        items.append(_Item(list(range(first, len(requests))), len(prefix)))
    return ScoreCall(engine_name, True, requests, items)


def padded_chunks(indices: Sequence[int], width: Callable[[int], int], budget: int,
                  max_rows: int | None = None) -> list[list[int]]:
    """Engines' scoring batches: `indices` shortest first, grouped so that each group's padded
    size (rows x the widest row's `width`) stays within `budget` and `max_rows`; a row over
    the budget by itself is a group of one. Sorting first keeps padding small."""
    chunks: list[list[int]] = []
    current: list[int] = []
    for i in sorted(indices, key=width):
        rows = len(current) + 1
        if current and (rows * width(i) > budget or (max_rows and rows > max_rows)):
            chunks.append(current)
            current = []
        current.append(i)
    if current:
        chunks.append(current)
    return chunks


# -- prompt_logprobs emulated by scoring the prompt ------------------------------------------
def prompt_requests(jobs: Sequence[Any]) -> list[tuple[Any, ScoreRequest | None]]:
    """(job, the request that scores its prompt) for each prepared prompt whose
    `prompt_logprobs` unillm emulates; None for a one-token prompt (nothing to score)."""
    out = []
    for job in jobs:
        if "prompt_logprobs" not in job.plan.emulated or job.prompt_logprobs is not None:
            continue
        ids = list(job.prompt_ids or ())
        request = (ScoreRequest(tuple(ids[:1]), tuple(ids[1:]), top=job.params.prompt_logprobs)
                   if len(ids) > 1 else None)
        out.append((job, request))
    return out


def as_prompt_logprobs(result: ScoreResult | None) -> list[TokenLogprob | None]:
    """An engine's scores of a prompt as `Completion.prompt_logprobs` (None first)."""
    out: list[TokenLogprob | None] = [None]
    for t in result.tokens if result is not None else ():
        out.append(TokenLogprob(int(t.token_id), float(t.logprob),  # type: ignore[arg-type]
                                dict(t.top), t.rank))
    return out


def store_prompt_logprobs(pending: list[tuple[Any, ScoreRequest | None]],
                          results: Sequence[ScoreResult]) -> None:
    it = iter(results)
    for job, request in pending:
        job.prompt_logprobs = as_prompt_logprobs(next(it) if request is not None else None)


def fill_prompt_logprobs(calls: Any, jobs: Sequence[Any]) -> None:
    """Score the prompts whose `prompt_logprobs` unillm emulates (one engine call)."""
    pending = prompt_requests(jobs)
    if pending:
        store_prompt_logprobs(pending, calls.score([r for _, r in pending if r is not None]))


async def afill_prompt_logprobs(calls: Any, jobs: Sequence[Any]) -> None:
    """`fill_prompt_logprobs` for asyncio."""
    pending = prompt_requests(jobs)
    if pending:
        store_prompt_logprobs(pending, await calls.ascore([r for _, r in pending if r is not None]))
