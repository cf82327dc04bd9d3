"""The prompts every bench sends: a fixed set shipped with unillm, and synthetic prompts of
chosen token lengths cut from a shipped text.

Both live in package data so that a result names exactly what was run (`PROMPT_SET`) and
anyone with the same unillm version runs the same prompts; no dataset is downloaded.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Protocol


class _Encoder(Protocol):
    def encode(self, text: str) -> list[int]: ...


@cache
def _prompt_file() -> dict[str, Any]:
    text = resources.files("unillm.bench").joinpath("data/prompts.json").read_text("utf-8")
    return json.loads(text)


@cache
def corpus() -> str:
    """The shipped text that synthetic prompts are cut from."""
    return resources.files("unillm.bench").joinpath("data/corpus.txt").read_text("utf-8")


def prompt_set_name() -> str:
    """Name of the shipped prompt set; recorded in every result that uses it."""
    return _prompt_file()["name"]


def latency_prompts(count: int | None = None) -> list[str]:
    """The first `count` prompts of the fixed set (all of them when None), in a fixed order."""
    prompts = list(_prompt_file()["prompts"])
    if count is None:
        return prompts
    if not 1 <= count <= len(prompts):
        raise ValueError(f"prompts = {count} is not allowed: 1 <= prompts <= {len(prompts)}")
    return prompts[:count]


@dataclass(frozen=True)
class LengthDist:
    """A token-length distribution: uniform on [mean*(1-spread), mean*(1+spread)], rounded
    (vLLM's random dataset uses the same form); spread 0 means every request has `mean`."""

    mean: int
    spread: float = 0.0

    def __post_init__(self) -> None:
        if self.mean < 1:
            raise ValueError(f"length = {self.mean} is not allowed: it must be >= 1")
        if not 0.0 <= self.spread < 1.0:
            raise ValueError(f"spread = {self.spread} is not allowed: 0 <= spread < 1")

    def sample(self, count: int, rng: random.Random) -> list[int]:
        lo = max(1, round(self.mean * (1 - self.spread)))
        hi = max(lo, round(self.mean * (1 + self.spread)))
        return [rng.randint(lo, hi) for _ in range(count)]

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "spread": self.spread}


def sample_lengths(count: int, inputs: LengthDist, outputs: LengthDist, seed: int) -> list[tuple[int, int]]:
    """(input tokens, output tokens) of each of `count` requests, reproducible from `seed`."""
    rng = random.Random(seed)
    ins = inputs.sample(count, rng)
    outs = outputs.sample(count, rng)
    return list(zip(ins, outs))


def token_prompts(tokenizer: _Encoder, lengths: Sequence[int], seed: int = 0) -> list[list[int]]:
    """Prompts of exactly `lengths[i]` token ids each, cut from the shipped text at seeded
    offsets (wrapping around), starting with the tokenizer's own prefix (its bos, if any).

    Cutting ids rather than text makes the input length exact for every engine that shares
    the tokenizer; the text is natural, so no engine sees degenerate repeated tokens.
    """
    prefix = list(tokenizer.encode(""))
    body = list(tokenizer.encode(corpus()))[len(prefix):]
    rng = random.Random(seed)
    out = []
    for length in lengths:
        want = length - len(prefix)
        if want < 1:
            raise ValueError(
                f"input length {length} is too short: the tokenizer adds {len(prefix)} token(s)"
            )
        start = rng.randrange(len(body))
        ids = [body[(start + i) % len(body)] for i in range(want)]
        out.append(prefix + ids)
    return out
