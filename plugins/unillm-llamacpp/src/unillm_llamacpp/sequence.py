"""One request's decoding state, from logits to the next token: written once for the two ways
the engine runs a request (one sequence at a time, engine.py; several in one `llama_decode`
batch, batching.py), so both mean the same.

Until `min_tokens` tokens exist, the terminators (eos unless `ignore_eos`, and
`stop_token_ids`) are masked out of the logits, as transformers and vLLM do; a constraint
(`structured`) masks what its grammar forbids; then the request's own sampler chain
(`sampling.SamplerChain`) picks the token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from unillm import EngineRequest, TokenLogprob
from unillm.timing import now


@dataclass
class Step:
    token: int
    time: float
    finish: str | None = None
    stop_reason: int | None = None
    logprob: TokenLogprob | None = None
    mask_s: float | None = None  # with a constraint: its masks' time so far
    compile_s: float | None = None  # with a constraint: compiling it (on every step)


def logprob_of(raw: Any, token: int, top: int) -> TokenLogprob:
    import numpy as np

    shifted = raw.astype(np.float64) - float(raw.max())
    lse = math.log(float(np.exp(shifted).sum()))
    alternatives: dict[int, float] = {}
    if top:
        best = np.argpartition(-shifted, top - 1)[:top]
        alternatives = {int(i): float(shifted[i] - lse) for i in best}
    return TokenLogprob(token, float(shifted[token] - lse), alternatives)


class Sequence:
    """A request being decoded: `step(ctx, index)` samples its next token from the logits at
    `index` of the last `llama_decode` batch. `received` records what the sampler chain got.
    Use as a context manager (or `close()`): it frees the chain."""

    def __init__(self, engine: Any, request: EngineRequest):
        from .sampling import SamplerChain

        p = self.params = request.params
        self.engine = engine
        self.prompt = list(request.prompt_token_ids or ())
        engine._check_prompt(self.prompt)
        self.terminators = set(p.stop_token_ids) | (set() if p.ignore_eos else set(engine.eos_ids))
        self.blocked = sorted(self.terminators) if p.min_tokens else []
        self.matcher = None
        if p.structured is not None:  # unillm's grammar engine, masking llama.cpp's logits
            from unillm.grammars import matchers

            (self.matcher,) = matchers(p.structured, engine.tokenizer, 1, engine.n_vocab)
        from unillm.token_rules import TokenRules  # logit_bias, allowed ids, bad words

        self.rules = TokenRules.of(p, engine.tokenizer, engine.n_vocab)
        self.generated: list[int] = []
        self.chain = SamplerChain(p, n_vocab=engine.n_vocab, window=engine.context_length,
                                  prompt_ids=self.prompt)
        self.received: dict[str, Any] = {
            "max_tokens": p.max_tokens, **self.chain.record,
            "stop_token_ids": sorted(p.stop_token_ids), "ignore_eos": p.ignore_eos,
            "eos_token_ids": sorted(engine.eos_ids), "min_tokens": p.min_tokens,
            "masked_before_min_tokens": self.blocked, "logprobs": p.logprobs,
            **({"token_rules": self.rules.record()} if self.rules else {}),
        }
        self.count = 0

    def _logits(self, ctx: Any, index: int) -> Any:
        import numpy as np

        lib = self.engine._lib
        ptr = lib.llama_get_logits_ith(ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.engine.n_vocab,))

    def step(self, ctx: Any, index: int = -1) -> Step:
        p, matcher = self.params, self.matcher
        self.count = count = self.count + 1
        raw = None
        blocking = self.blocked and count <= p.min_tokens
        if p.logprobs is not None or blocking or matcher is not None or self.rules:
            logits = self._logits(ctx, index)
            if p.logprobs is not None:
                raw = logits.copy()
            if blocking:
                logits[self.blocked] = -math.inf
            if self.rules is not None:
                self.rules.apply_numpy(logits, self.generated)
            if matcher is not None:
                logits[~matcher.allowed_numpy(self.engine.n_vocab)] = -math.inf
        token = self.chain.sample(ctx, index)
        self.generated.append(token)
        if matcher is not None:
            matcher.advance(token)
        step = Step(token, now())
        if matcher is not None:
            step.mask_s, step.compile_s = matcher.mask_s, matcher.compiled.compile_s
        if raw is not None:
            step.logprob = logprob_of(raw, token, p.logprobs or 0)
        if token in self.terminators and count > p.min_tokens:
            step.finish = "stop"
            step.stop_reason = token if token in p.stop_token_ids else None
        elif count == p.max_tokens:
            step.finish = "length"
        return step

    def close(self) -> None:
        self.chain.close()

    def __enter__(self) -> Sequence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
