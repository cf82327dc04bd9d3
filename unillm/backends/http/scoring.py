"""Scoring on text engines: which of the server's prompt tokens are the continuation's.

A server that scores a prompt (OpenAI's ``echo`` with ``logprobs``, TGI's
``decoder_input_details``) returns one entry per token of its own tokenization of
``context + continuation``: the first entry unscored, since nothing precedes it. The
continuation is chosen as lm-eval chooses it: the whole text's tokens after the context's,
the context's count coming from the server itself (the prompt length it reports for the
context alone, cached per context: a multiple-choice task scores several continuations of one
context). Counting tokens rather than characters keeps this right where a token's text is not
a whole character (byte-level tokens) and where a server leaves its start token out of the echo.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from ...engine import ScoreRequest
from ...errors import EngineError
from ...results import TokenScore

__all__ = ["UNKNOWN", "ContextCounts", "continuation_scores"]

UNKNOWN = -1
"""The token count of an empty context whose counting request the server refused (vLLM and
TGI refuse an empty prompt even where their tokenizer would add a start token to it)."""


class ContextCounts:
    """Contexts' token counts as one server reported them (thread-safe, bounded)."""

    def __init__(self, limit: int = 4096):
        self._counts: dict[str, int] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, context: str) -> int | None:
        with self._lock:
            return self._counts.get(context)

    def put(self, context: str, count: int) -> int:
        with self._lock:
            if len(self._counts) >= self._limit:
                self._counts.clear()
            self._counts[context] = count
        return count


def continuation_scores(engine: str, request: ScoreRequest, context_tokens: int,
                        texts: Sequence[str], values: Sequence[float | None],
                        tops: Sequence[dict[str, float] | None] | None,
                        prompt_tokens: int) -> list[TokenScore]:
    """The continuation's `TokenScore`s from a server's entries for the prompt (`texts`,
    `values`, `tops`: one each per token, start token included or not) and the prompt's
    length as the server counted it (start token included)."""
    dropped = prompt_tokens - len(texts)  # a start token the server left out of its entries
    if context_tokens == UNKNOWN:
        # An empty context: its start token, if any, is the first entry, unscored, with a
        # text the prompt does not begin with ("<s>").
        prompt = (request.context or "") + (request.continuation or "")
        context_tokens = dropped + int(bool(texts) and values[0] is None and bool(texts[0])
                                       and not prompt.startswith(texts[0]))
    first = context_tokens - dropped
    if not texts or dropped < 0 or not 0 <= first <= len(texts):
        raise EngineError(engine, f"cannot tell the continuation's tokens among the server's "
                          f"({len(texts)} entries for a prompt of {prompt_tokens} tokens, "
                          f"{context_tokens} of them the context's)")
    out = []
    for i in range(first, len(texts)):
        value, top = values[i], (tops[i] if tops is not None else None)
        if value is None or request.top is None:
            out.append(TokenScore(value, text=texts[i]))
        elif tops is None:  # the server gives no alternatives: greedy unknown
            out.append(TokenScore(value, text=texts[i]))
        else:
            ranked = sorted((top or {}).items(), key=lambda kv: -kv[1])
            best = ranked[0][1] if ranked else value
            out.append(TokenScore(value, text=texts[i], greedy=value >= best,
                                  top=dict(ranked[:request.top])))
    return out


def usage_count(engine: str, response: dict[str, Any], name: str) -> int:
    """An integer the server reported in ``usage``, which scoring cannot do without."""
    value = (response.get("usage") or {}).get(name)
    if not isinstance(value, int):
        raise EngineError(engine, f"the server's answer has no usage.{name}, which scoring "
                          "needs to find the continuation's tokens")
    return value
