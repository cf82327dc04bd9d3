"""What a call returns: `Completion` (one prompt), `Sample` (one generated sequence), `Chunk`
(one streamed piece), and `Completions` (a batch's results with the batch's own timing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .params import SamplingParams
from .timing import RunTiming, Timing

FinishReason = Literal["stop", "length", "abort"]
"""``stop``: end-of-sequence, a stop token or a stop string; ``length``: max_tokens reached;
``abort``: the caller stopped a stream before it ended."""


@dataclass(frozen=True)
class TokenLogprob:
    """Log-probability of one generated token and of the most likely alternatives."""

    token_id: int
    logprob: float
    top: Mapping[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """One generated sequence.

    `stop_reason` is the stop string or stop token id that ended it (None for end-of-sequence
    or length). `complete`, with a `structured` constraint, says whether the text, all of it,
    is a full match of the constraint (False after `max_tokens` or a stop string cut it
    short); None without a constraint.
    """

    index: int
    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason
    timing: Timing
    stop_reason: str | int | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    complete: bool | None = None


@dataclass(frozen=True)
class Completion:
    """The result for one prompt: its samples (n of them) and what the engine received.

    `text`, `token_ids`, `finish_reason`, `timing` are those of the first sample, which is the
    only one unless `n > 1`; with `n > 1` read `samples`.

    `engine_params` are the arguments the engine was actually called with, after unillm's
    translation (e.g. CTranslate2's ``sampling_topk``), so a result can always be traced back to
    what ran. `emulated` names the fields unillm implemented itself for this engine.
    """

    samples: tuple[Sample, ...]
    engine: str
    params: SamplingParams
    engine_params: Mapping[str, Any]
    prompt: str | None = None
    prompt_token_ids: tuple[int, ...] | None = None
    emulated: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return self.samples[0].text

    @property
    def token_ids(self) -> tuple[int, ...]:
        return self.samples[0].token_ids

    @property
    def finish_reason(self) -> FinishReason:
        return self.samples[0].finish_reason

    @property
    def stop_reason(self) -> str | int | None:
        return self.samples[0].stop_reason

    @property
    def timing(self) -> Timing:
        return self.samples[0].timing

    @property
    def logprobs(self) -> tuple[TokenLogprob, ...] | None:
        return self.samples[0].logprobs

    @property
    def complete(self) -> bool | None:
        return self.samples[0].complete

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record: texts, ids, timings, requested and received parameters."""
        return {
            "engine": self.engine,
            "prompt": self.prompt,
            "prompt_token_ids": list(self.prompt_token_ids) if self.prompt_token_ids else None,
            "params": self.params.model_dump(),
            "engine_params": _jsonable(self.engine_params),
            "emulated": list(self.emulated),
            "samples": [
                {
                    "index": s.index,
                    "text": s.text,
                    "token_ids": list(s.token_ids),
                    "finish_reason": s.finish_reason,
                    "stop_reason": s.stop_reason,
                    "complete": s.complete,
                    "timing": s.timing.to_dict(),
                }
                for s in self.samples
            ],
        }


class Completions(list[Completion]):
    """The results of `generate` on a list of prompts, in input order, plus `run`: the timing of
    the whole call (wall time, output/request/total throughput)."""

    run: RunTiming

    def __init__(self, items: list[Completion], run: RunTiming):
        super().__init__(items)
        self.run = run


@dataclass(frozen=True)
class Chunk:
    """A piece of a streamed sample: new text and the token ids it came from.

    `finish_reason` is set on the last chunk of each sample. Concatenating a sample's chunk
    texts gives exactly the text a non-streamed call returns. `logprobs` (with
    `SamplingParams.logprobs`) are those of this chunk's `token_ids`, so a server can stream
    them.
    """

    text: str
    token_ids: tuple[int, ...]
    index: int = 0
    finish_reason: FinishReason | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None  # of `token_ids`, when requested


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)
