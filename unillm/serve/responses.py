"""unillm results -> OpenAI's response and stream-chunk JSON (completions and chat)."""

from __future__ import annotations

import functools
import json
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..results import Completion, TokenLogprob
from .tools import message

TokenText = Callable[[int], str]


_ids = random.Random()  # seeded from os.urandom once: ids must be unique, not secret


def new_id(prefix: str) -> str:
    """A response id. Not uuid4: its os.urandom call per request showed up in profiles."""
    return f"{prefix}-{_ids.getrandbits(128):032x}"


def now_seconds() -> int:
    return int(time.time())


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


SSE_DONE = "data: [DONE]\n\n"

_json_str = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses for str


class ChunkEvents:
    """The SSE events of one streamed response's text chunks, exactly as `sse` writes
    `completion_chunk` / `chat_chunk` without logprobs, but spliced from the parts that never
    change (id, created, model...) and the JSON string of the text: one event per token per
    client is the hot path of a busy server, and building and encoding a dict for each showed
    up in its profiles."""

    def __init__(self, rid: str, created: int, model: str, obj: str, with_usage: bool):
        head = _chunk(rid, created, model, obj, {}, False)
        del head["choices"]
        opened = json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1]
        self._head = f'data: {opened},"choices":[{{"index":'
        self._tail = '}],"usage":null}\n\n' if with_usage else "}]}\n\n"

    @staticmethod
    def _finish(reason: str | None) -> str:
        return "null" if reason is None else _json_str(reason)

    def completion(self, index: int, text: str, finish_reason: str | None) -> str:
        """`sse(completion_chunk(..., logprobs=None))`."""
        return (f'{self._head}{index},"text":{_json_str(text)},"logprobs":null,'
                f'"finish_reason":{self._finish(finish_reason)}{self._tail}')

    def chat(self, index: int, content: str, finish_reason: str | None) -> str:
        """`sse(chat_chunk(..., {"content": content} if content else {}, logprobs=None))`."""
        delta = f'{{"content":{_json_str(content)}}}' if content else "{}"
        return (f'{self._head}{index},"delta":{delta},"logprobs":null,'
                f'"finish_reason":{self._finish(finish_reason)}{self._tail}')


def token_text(tokenizer: Any) -> TokenText:
    """Each token's own text, as logprobs responses show it (cached: a vocabulary is small)."""
    if tokenizer is None:
        return lambda token_id: f"token_id:{token_id}"

    @functools.lru_cache(maxsize=65536)
    def text(token_id: int) -> str:
        return tokenizer.decode([token_id])

    return text


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def usage_of(completions: Sequence[Completion]) -> dict[str, Any]:
    """OpenAI's `usage` of `completions`, with `prompt_tokens_details.cached_tokens` where the
    engine says how many prompt tokens it took from a prompt cache (llama.cpp's
    `prompt_cache_tokens`), as OpenAI and vLLM report them."""
    prompt = sum(c.samples[0].timing.prompt_tokens or 0 for c in completions if c.samples)
    output = sum(s.timing.output_tokens for c in completions for s in c.samples)
    body: dict[str, Any] = usage(prompt, output)
    cached = [c.engine_params.get("prompt_cache_tokens") for c in completions]
    if any(isinstance(n, int) for n in cached):
        body["prompt_tokens_details"] = {"cached_tokens": sum(n or 0 for n in cached)}
    return body


# -- logprobs ----------------------------------------------------------------------------------
def completion_logprobs(lps: Sequence[TokenLogprob], text: TokenText,
                        offset: int = 0) -> dict[str, Any]:
    """The legacy completions shape: parallel lists of tokens, logprobs, top alternatives."""
    tokens, offsets = [], []
    for lp in lps:
        s = text(lp.token_id)
        tokens.append(s)
        offsets.append(offset)
        offset += len(s)
    return {
        "tokens": tokens,
        "token_logprobs": [lp.logprob for lp in lps],
        "top_logprobs": [{text(t): v for t, v in lp.top.items()} for lp in lps],
        "text_offset": offsets,
    }


def chat_logprobs(lps: Sequence[TokenLogprob], text: TokenText) -> dict[str, Any]:
    def entry(token_id: int, logprob: float) -> dict[str, Any]:
        s = text(token_id)
        return {"token": s, "logprob": logprob, "bytes": list(s.encode())}

    return {"content": [
        {**entry(lp.token_id, lp.logprob),
         "top_logprobs": [entry(t, v) for t, v in lp.top.items()]}
        for lp in lps
    ]}


# -- whole responses ---------------------------------------------------------------------------
def completion_response(rid: str, created: int, model: str, completions: Sequence[Completion],
                        n: int, logprobs: bool, text: TokenText) -> dict[str, Any]:
    choices = []
    for p, completion in enumerate(completions):
        for s in completion.samples:
            choices.append({
                "index": p * n + s.index, "text": s.text,
                "logprobs": completion_logprobs(s.logprobs or (), text) if logprobs else None,
                "finish_reason": s.finish_reason, "stop_reason": s.stop_reason,
            })
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": choices, "usage": usage_of(completions)}


def chat_response(rid: str, created: int, model: str, completion: Completion,
                  logprobs: bool, text: TokenText) -> dict[str, Any]:
    choices = [{
        "index": s.index,
        "message": message(s),
        "logprobs": chat_logprobs(s.logprobs or (), text) if logprobs else None,
        "finish_reason": s.finish_reason, "stop_reason": s.stop_reason,
    } for s in completion.samples]
    return {"id": rid, "object": "chat.completion", "created": created, "model": model,
            "choices": choices, "usage": usage_of([completion])}


# -- stream chunks -----------------------------------------------------------------------------
def _chunk(rid: str, created: int, model: str, obj: str, choice: dict[str, Any],
           with_usage: bool) -> dict[str, Any]:
    chunk: dict[str, Any] = {"id": rid, "object": obj, "created": created, "model": model,
                             "choices": [choice]}
    if with_usage:  # OpenAI sends "usage": null in every chunk but the last when asked for it
        chunk["usage"] = None
    return chunk


def completion_chunk(rid: str, created: int, model: str, index: int, text: str,
                     finish_reason: str | None, logprobs: dict[str, Any] | None = None,
                     with_usage: bool = False) -> dict[str, Any]:
    return _chunk(rid, created, model, "text_completion", {
        "index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason,
    }, with_usage)


def chat_chunk(rid: str, created: int, model: str, index: int, delta: dict[str, Any],
               finish_reason: str | None, logprobs: dict[str, Any] | None = None,
               with_usage: bool = False) -> dict[str, Any]:
    return _chunk(rid, created, model, "chat.completion.chunk", {
        "index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason,
    }, with_usage)


def usage_chunk(rid: str, created: int, model: str, obj: str,
                usage_body: dict[str, int]) -> dict[str, Any]:
    return {"id": rid, "object": obj, "created": created, "model": model, "choices": [],
            "usage": usage_body}
