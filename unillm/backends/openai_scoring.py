"""Scoring through an OpenAI-compatible server: ``/completions`` with ``echo`` and ``logprobs``,
which returns the log-probability of every prompt token (lm-eval's ``local-completions``
model relies on the same). The continuation's tokens are picked by `http.scoring` (the
context's token count from a short request of its own); whether a token is the most likely
one is read from ``top_logprobs``, as lm-eval reads it.
"""

from __future__ import annotations

from typing import Any

from ..engine import ScoreRequest, ScoreResult
from ..errors import EngineError, UnsupportedParameterError
from ._profiles import Profile
from .http.scoring import UNKNOWN, ContextCounts, continuation_scores, usage_count


class EchoScorer:
    """Request bodies and response reading for one server profile."""

    def __init__(self, engine: str, profile: Profile, model: str):
        self.engine = engine
        self.profile = profile
        self.model = model
        self.counts = ContextCounts()

    def count_body(self, context: str) -> dict[str, Any]:
        """A request whose usage counts the context's tokens (start token included)."""
        return {"model": self.model, "prompt": context, "max_tokens": 1, "temperature": 0.0,
                "n": 1, "stream": False}

    def body(self, request: ScoreRequest) -> dict[str, Any]:
        return {"model": self.model, "prompt": (request.context or "") + (request.continuation or ""),
                "max_tokens": self.profile.echo_max_tokens, "temperature": 0.0, "n": 1,
                "echo": True, "logprobs": self._logprobs(request), "stream": False}

    @staticmethod
    def _logprobs(request: ScoreRequest) -> int:
        return 0 if request.top is None else max(request.top, 1)  # top-1 tells greedy

    def remember(self, context: str, response: dict[str, Any] | None) -> int:
        """The context's token count from its counting request (None: the server failed on an
        empty prompt: vLLM answers 400, llama-cpp-python 0.3.36 500)."""
        count = UNKNOWN if response is None else usage_count(self.engine, response,
                                                             "prompt_tokens")
        if context == "" and count in (0, UNKNOWN) and self.profile.echo_needs_bos:
            raise UnsupportedParameterError(
                self.engine, "score", message=f"engine {self.engine!r} cannot score text on "
                f"this model with server {self.profile.name!r}: the model's tokenizer adds no "
                "start token, and for such models the server's echo gives each token the "
                "log-probability of the one after it (llama-cpp-python 0.3.36); use another "
                "server or engine")
        return self.counts.put(context, count)

    def result(self, request: ScoreRequest, context_tokens: int,
               response: dict[str, Any]) -> ScoreResult:
        choices = response.get("choices") or []
        logprobs = (choices[0].get("logprobs") or {}) if choices else {}
        tokens = list(logprobs.get("tokens") or ())
        values = list(logprobs.get("token_logprobs") or ())
        tops = list(logprobs.get("top_logprobs") or [None] * len(tokens))
        if not tokens or len(values) != len(tokens):
            raise EngineError(self.engine, "the server returned no prompt log-probabilities "
                              f"with echo: {str(response)[:200]}")
        prompt = usage_count(self.engine, response, "prompt_tokens")
        generated = (usage_count(self.engine, response, "completion_tokens")
                     if self.profile.echo_max_tokens else 0)
        echoed = len(tokens) - generated  # the generated tokens' entries come last
        out = continuation_scores(self.engine, request, context_tokens, tokens[:echoed],
                                  values[:echoed], tops[:echoed], prompt)
        received = {"endpoint": "/completions", "server": self.profile.name, "echo": True,
                    "logprobs": self._logprobs(request), "temperature": 0.0,
                    "max_tokens": self.profile.echo_max_tokens,
                    "context_tokens": context_tokens, "prompt_tokens": prompt}
        return ScoreResult(out, received)
