"""Token rules: `logit_bias`, `allowed_token_ids` and `bad_words`, with vLLM's meaning, applied
the same way by every in-process engine that has no native field for them.

The meaning, written once (docs/structured.md, "Token rules", says the same):

- `allowed_token_ids`: every other token's logit is -inf (vLLM applies it first);
- `bad_words`: each word is tokenized without special tokens, once as given (left-stripped)
  and once with a leading space (kept only where that gives a different first token and the
  same length: vLLM's rule), and at each step the last token of such a sequence is -inf when
  the tokens generated so far (the prompt excluded) end with the rest of it;
- `logit_bias`: added to the raw logits, before penalties, temperature and the filters.

The masks come before the bias (a -inf stays -inf), and all of it before the penalties, as in
vLLM's sampler. `TokenRules.of` compiles a request's rules once per (rules, tokenizer,
vocabulary width); engines then call `apply_numpy` (llama.cpp's logits array) or
`apply_torch` (a batch of rows) at each step with the tokens generated so far.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidParameterError
from .params import SamplingParams

FIELDS = ("logit_bias", "allowed_token_ids", "bad_words")


def has_rules(p: SamplingParams) -> bool:
    return bool(p.logit_bias or p.allowed_token_ids or p.bad_words)


def encode_plain(tokenizer: Any, text: str) -> list[int]:
    """`text`'s ids without special tokens (what vLLM's bad_words tokenizes with)."""
    encode = getattr(tokenizer, "encode_plain", None)
    if encode is None:
        raise InvalidParameterError(
            "bad_words", text, "words this engine's tokenizer can encode without special "
            "tokens (it has no encode_plain)", owner="SamplingParams")
    return list(encode(text))


def bad_word_sequences(words: Sequence[str], tokenizer: Any) -> tuple[tuple[int, ...], ...]:
    """The token sequences `words` ban, by vLLM's rule (SamplingParams.update_from_tokenizer):
    the word left-stripped, plus its space-prefixed form where that starts with another token
    and has the same length."""
    sequences: list[tuple[int, ...]] = []
    for word in words:
        plain = tuple(encode_plain(tokenizer, word.lstrip()))
        if not plain:
            raise InvalidParameterError("bad_words", word, "words that tokenize to at least "
                                        "one token", owner="SamplingParams")
        sequences.append(plain)
        spaced = tuple(encode_plain(tokenizer, " " + word.lstrip()))
        if spaced and spaced[0] != plain[0] and len(spaced) == len(plain):
            sequences.append(spaced)
    return tuple(sequences)


def check_token_ids(p: SamplingParams, vocab_size: int | None) -> None:
    """Token ids in `logit_bias` and `allowed_token_ids` must be in the vocabulary."""
    if vocab_size is None:
        return
    for name, ids in (("logit_bias", p.logit_bias or ()), ("allowed_token_ids",
                                                             p.allowed_token_ids or ())):
        bad = [i for i in ids if i >= vocab_size]
        if bad:
            raise InvalidParameterError(name, bad[0], f"token ids below {vocab_size} (this "
                                        "model's vocabulary size)", owner="SamplingParams")


@dataclass(frozen=True, eq=False)
class TokenRules:
    """One request's token rules, compiled for a tokenizer and a logits width."""

    bias: Mapping[int, float]
    allowed: tuple[int, ...] | None
    bad_words: tuple[tuple[int, ...], ...]
    width: int  # logits per row (the model's output size, possibly above the tokenizer's)
    _tensors: dict = field(default_factory=dict, repr=False)

    @staticmethod
    def of(p: SamplingParams, tokenizer: Any, width: int) -> TokenRules | None:
        """The compiled rules of `p` (cached), or None when it sets none."""
        if not has_rules(p):
            return None
        check_token_ids(p, min(width, getattr(tokenizer, "vocab_size", width)))
        return _compiled(tokenizer, width, p.logit_bias, p.allowed_token_ids, p.bad_words)

    @functools.cached_property
    def static(self):
        """The part that never changes: bias added, disallowed tokens at -inf (float32)."""
        import numpy as np

        row = np.zeros(self.width, dtype=np.float32)
        if self.allowed is not None:
            row[:] = -np.inf
            row[list(self.allowed)] = 0.0
        for token, bias in self.bias.items():
            row[token] += bias
        return row

    def banned_now(self, output: Sequence[int]) -> list[int]:
        """Tokens `bad_words` bans after the generated tokens `output`."""
        banned = []
        for seq in self.bad_words:
            rest = len(seq) - 1
            if rest > len(output):
                continue
            if rest == 0 or tuple(output[-rest:]) == seq[:-1]:
                banned.append(seq[-1])
        return banned

    def apply_numpy(self, logits: Any, output: Sequence[int]) -> None:
        """Apply the rules to one row of logits (a float numpy array), in place."""
        width = min(len(logits), self.width)
        logits[:width] += self.static[:width]
        banned = self.banned_now(output)
        if banned:
            logits[banned] = float("-inf")

    def apply_torch(self, scores: Any, outputs: Sequence[Sequence[int]]) -> None:
        """Apply the rules to `scores` (rows x vocabulary), in place; `outputs[i]` are row i's
        generated tokens."""
        import torch

        key = (scores.device, scores.dtype)
        static = self._tensors.get(key)
        if static is None:
            static = self._tensors[key] = torch.from_numpy(self.static).to(scores.device,
                                                                            scores.dtype)
        width = min(scores.shape[1], self.width)
        scores[:, :width] += static[:width]
        if self.bad_words:
            for row, output in enumerate(outputs):
                banned = self.banned_now(output)
                if banned:
                    scores[row, banned] = float("-inf")

    def record(self) -> dict[str, Any]:
        """What was applied, for `Completion.engine_params`."""
        out: dict[str, Any] = {}
        if self.bias:
            out["logit_bias"] = dict(self.bias)
        if self.allowed is not None:
            out["allowed_token_ids"] = len(self.allowed)
        if self.bad_words:
            out["bad_words_token_ids"] = [list(s) for s in self.bad_words]
        return out


@functools.lru_cache(maxsize=64)
def _compiled(tokenizer: Any, width: int, bias: Any, allowed: tuple[int, ...] | None,
              words: tuple[str, ...]) -> TokenRules:
    return TokenRules(dict(bias or {}), allowed, bad_word_sequences(words, tokenizer)
                      if words else (), width)
