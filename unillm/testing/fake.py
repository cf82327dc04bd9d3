"""A pure-Python engine and tokenizer: the core's tests run on them without torch.

`ByteTokenizer` maps each UTF-8 byte to one id (so any text round-trips, and a multi-byte
character spans several tokens, which exercises incremental decoding), plus a start and an
end-of-sequence id. `FakeEngine` "runs a model" that is a pure function of the context: its
next-token scores are a hash of the last tokens, so greedy output is deterministic, seeded
sampling reproducible, and the end-of-sequence token comes now and then. It implements the
engine contract honestly (ids in, ids out, the terminating token included, what it received
reported), so the core's planning, decoding, emulation and timing can be tested on it.

Use it without the registry: ``unillm.Generator(FakeEngine(), engine_name="fake",
model="fake")``; or register `FakePlugin` to load it by name.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import Field

from ..engine import (
    Capabilities,
    Engine,
    EngineOptions,
    EngineRequest,
    EngineResult,
    EngineSequence,
    ScoreRequest,
    ScoreResult,
    TokenEvent,
    stream_as_batch_of_one,
)
from ..results import TokenScore
from ..hookspecs import hookimpl
from ..timing import now

BOS, EOS = 256, 257
VOCAB = 258


class ByteTokenizer:
    """UTF-8 bytes as token ids 0..255; 256 starts a prompt, 257 ends a sequence."""

    eos_token_ids = frozenset({EOS})
    vocab_size = VOCAB

    def encode(self, text: str) -> list[int]:
        return [BOS, *text.encode("utf-8")]

    def encode_plain(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def decode_with_special(self, ids: Sequence[int]) -> str:
        """`decode` with the start and end tokens written as <s> and </s>."""
        marks = {BOS: b"<s>", EOS: b"</s>"}
        return b"".join(marks.get(i, bytes([i]) if i < 256 else b"")
                        for i in ids).decode("utf-8", errors="replace")

    def chat_text(self, messages: Sequence[Mapping[str, Any]]) -> str:
        turns = "".join(f"<{m['role']}>{m.get('content') or ''}\n" for m in messages)
        return turns + "<assistant>"

    def chat_token_ids(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        return self.encode(self.chat_text(messages))

    def llguidance_tokenizer(self):
        """This vocabulary for llguidance (structured output): each byte a token."""
        import llguidance

        tokens = [bytes([i]) for i in range(256)] + [b"<s>", b"</s>"]
        wrapper = type("ByteVocab", (), {
            "eos_token_id": EOS, "bos_token_id": BOS, "tokens": tokens,
            "special_token_ids": [BOS, EOS], "is_tokenizer_wrapper": True,
            "__call__": lambda self, text: list(text.encode("utf-8") if isinstance(text, str)
                                                else text),
        })()
        return llguidance.LLTokenizer(llguidance.TokenizerWrapper(wrapper), slices=[])


class FakeOptions(EngineOptions):
    eos_odds: float = Field(0.02, ge=0.0, le=1.0,
                            description="how much of the score mass the end token gets")
    context_length: int = Field(512, ge=8, description="the fake model's context window")


class FakeEngine(Engine):
    """The pure-Python engine. Native: max_tokens, temperature, top_k, seed, ignore_eos,
    stop_token_ids, scoring (everything else is emulated by the core or refused)."""

    Options = FakeOptions
    capabilities = Capabilities(
        params=frozenset({"max_tokens", "temperature", "top_k", "seed", "ignore_eos",
                          "stop_token_ids", "structured"}),
        batch_params="per_request", stop_hook=True, score=True,
    )

    def __init__(self, model: str = "fake", options: FakeOptions | None = None):
        super().__init__(model, options or FakeOptions())
        self.tokenizer = ByteTokenizer()
        self.context_length = self.options.context_length

    def _scores(self, context: Sequence[int]) -> list[float]:
        """Next-token log-scores: a pure function of the last three tokens."""
        digest = hashlib.blake2b(bytes(str(list(context[-3:])), "ascii"), digest_size=64).digest()
        scores = [((digest[i % 64] * 31 + i * 17) % 97) / 16.0 for i in range(VOCAB)]
        scores[BOS] = -math.inf
        scores[EOS] = math.log(self.options.eos_odds or 1e-300) + max(scores)
        return scores

    @staticmethod
    def _pick(scores: list[float], temperature: float, top_k: int | None,
              rng: random.Random) -> int:
        if temperature == 0:
            return max(range(len(scores)), key=lambda i: (scores[i], -i))
        order = [i for i in sorted(range(len(scores)), key=lambda i: -scores[i])
                 if scores[i] > -math.inf][: top_k or len(scores)]
        top = scores[order[0]]
        weights = [math.exp((scores[i] - top) / temperature) for i in order]
        return rng.choices(order, weights)[0]

    def _tokens(self, request: EngineRequest, index: int) -> Iterator[tuple[int, str | None]]:
        """(token, finish reason or None) per step of sample `index`."""
        p = request.params
        rng = random.Random(p.seed if p.seed is None else p.seed * 1_000_003 + index)
        context = list(request.prompt_token_ids or ())
        ends = set(p.stop_token_ids) | (set() if p.ignore_eos else {EOS})
        matcher = None
        if p.structured is not None:
            from ..grammars import matchers

            (matcher,) = matchers(p.structured, self.tokenizer, 1, VOCAB)
        for count in range(1, p.max_tokens + 1):
            scores = self._scores(context)
            if matcher is not None:  # the grammar engine's mask, as a real engine applies it
                allowed = set(matcher.allowed_ids())
                scores = [sc if i in allowed else -math.inf for i, sc in enumerate(scores)]
            token = self._pick(scores, p.temperature, p.top_k, rng)
            if matcher is not None:
                matcher.advance(token)
            context.append(token)
            if token in ends:
                yield token, "stop"
                return
            yield token, "length" if count == p.max_tokens else None
            if request.aborted or request.should_stop(index, (token,)):
                return

    def _logprobs(self, context: Sequence[int]) -> list[float]:
        """The model's next-token log-probabilities: log-softmax of `_scores`."""
        scores = self._scores(context)
        top = max(scores)
        log_sum = top + math.log(sum(math.exp(v - top) for v in scores if v > -math.inf))
        return [v - log_sum for v in scores]

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        out = []
        for request in requests:
            context = list(request.context_ids)
            tokens = []
            for token in request.continuation_ids:
                lps = self._logprobs(context)
                best = max(range(VOCAB), key=lambda i: (lps[i], -i))  # `_pick`'s greedy choice
                top = {}
                if request.top:
                    order = sorted(range(VOCAB), key=lambda i: (-lps[i], i))[:request.top]
                    top = {i: lps[i] for i in order}
                tokens.append(TokenScore(lps[token], token, greedy=token == best if
                                         request.top is not None else None,
                                         rank=1 + sum(v > lps[token] for v in lps), top=top))
                context.append(token)
            out.append(ScoreResult(tokens, received={"top": request.top}))
        return out

    def _received(self, request: EngineRequest) -> dict[str, Any]:
        p = request.params
        return {"max_tokens": p.max_tokens, "temperature": p.temperature, "top_k": p.top_k,
                "seed": p.seed, "ends": sorted(set(p.stop_token_ids) | {EOS}),
                "ignore_eos": p.ignore_eos}

    def generate(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        results = []
        for request in requests:
            samples = []
            for index in range(request.params.n):
                ids, times, finish = [], [], "length"
                for token, end in self._tokens(request, index):
                    ids.append(token)
                    times.append(now())
                    finish = end or finish
                stop = ids[-1] if finish == "stop" and ids[-1] != EOS else None
                samples.append(EngineSequence(ids, finish, stop, token_times=times))
            results.append(EngineResult(samples, received=self._received(request)))
        return results

    def stream(self, request: EngineRequest) -> Iterator[TokenEvent]:
        return stream_as_batch_of_one(self, request)

    def stream_batch(self, requests: Sequence[EngineRequest]) -> Iterator[tuple[int, TokenEvent]]:
        """Round-robin over every sample of every request, one token each per step, as a
        batched engine interleaves them."""
        live = [(i, k, self._tokens(r, k)) for i, r in enumerate(requests)
                for k in range(r.params.n) if not r.aborted]
        for i, r in enumerate(requests):
            yield i, TokenEvent(result=EngineResult(received=self._received(r)))
        while live:
            still = []
            for i, k, tokens in live:
                if requests[i].aborted:
                    continue
                step = next(tokens, None)
                if step is None:
                    continue
                token, end = step
                stop = token if end == "stop" and token != EOS else None
                yield i, TokenEvent(k, (token,), finish_reason=end, stop_reason=stop)
                if end is None:
                    still.append((i, k, tokens))
            live = still


class FakePlugin:
    """Registers the fake engine as ``fake`` (``unillm.register_plugin(FakePlugin())``)."""

    @hookimpl
    def unillm_register_engines(self, register) -> None:
        register("fake", FakeEngine, description="pure-Python test engine (unillm.testing.fake)")
