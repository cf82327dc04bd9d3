"""What a call returns: `Completion` (one prompt), `Sample` (one generated sequence), `Chunk`
(one streamed piece), and `Completions` (a batch's results with the batch's own timing); with
tools, `ToolCall` (a call the model made) and `ToolCallDelta` (a streamed piece of one); for
scoring (`Generator.score`), `Score` and `RollingScore` per text and `Scores` for a batch, with
`TokenScore` per token and `ScoreTiming`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .params import SamplingParams
from .timing import RunTiming, Timing

FinishReason = Literal["stop", "length", "abort", "tool_calls"]
"""``stop``: end-of-sequence, a stop token or a stop string; ``length``: max_tokens reached;
``abort``: the caller stopped a stream before it ended; ``tool_calls``: the sample ended (as
``stop`` would) after calling tools (chat with ``tools=``; see docs/tools.md)."""


@dataclass(frozen=True)
class ToolCall:
    """One tool call the model made, as OpenAI's ``message.tool_calls[i]``: `arguments` is the
    JSON text of the arguments object (`parsed_arguments()` decodes it)."""

    id: str
    name: str
    arguments: str
    type: str = "function"

    def parsed_arguments(self) -> Any:
        return json.loads(self.arguments)

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type,
                "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class ToolCallDelta:
    """A streamed piece of tool call `index` (its position among the sample's calls), as OpenAI
    streams ``delta.tool_calls``: the first piece of a call has its `id` and `name`, and the
    call's `arguments` are the concatenation of every piece's `arguments`."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None

    def to_openai(self) -> dict[str, Any]:
        if self.id is None:
            return {"index": self.index, "function": {"arguments": self.arguments}}
        return {"index": self.index, "id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class TokenLogprob:
    """Log-probability of one generated token and of the most likely alternatives."""

    token_id: int
    logprob: float
    top: Mapping[int, float] = field(default_factory=dict)
    rank: int | None = None  # 1 = the most likely token; None where the engine does not say


@dataclass(frozen=True)
class Sample:
    """One generated sequence.

    `stop_reason` is the stop string or stop token id that ended it (None for end-of-sequence
    or length). `complete`, with a `structured` constraint, says whether the text, all of it,
    is a full match of the constraint (False after `max_tokens` or a stop string cut it
    short); None without a constraint.

    With tools (`Generator.chat(..., tools=...)`), `tool_calls` holds the calls parsed from the
    text (empty if it made none) and `content` the text outside them, as OpenAI's
    ``message.content`` (None when there is none); `text` stays the whole generated text.
    Without tools, `tool_calls` is None and `content` is `text`.
    """

    index: int
    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason
    timing: Timing
    stop_reason: str | int | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    complete: bool | None = None
    tool_calls: tuple[ToolCall, ...] | None = None
    content: str | None = None

    def __post_init__(self) -> None:
        if self.tool_calls is None and self.content is None:
            object.__setattr__(self, "content", self.text)


@dataclass(frozen=True)
class Completion:
    """The result for one prompt: its samples (n of them) and what the engine received.

    `text`, `token_ids`, `finish_reason`, `timing` are those of the first sample, which is the
    only one unless `n > 1`; with `n > 1` read `samples`.

    `engine_params` are the arguments the engine was actually called with, after unillm's
    translation (e.g. CTranslate2's ``sampling_topk``), so a result can always be traced back to
    what ran. `emulated` names the fields unillm implemented itself for this engine.
    `tool_format` names how tool calls were read from the text (``hermes``, ``llama3_json``,
    ``mistral``, ``response_template``; ``server`` where the engine's server parsed them), with
    tools only.
    """

    samples: tuple[Sample, ...]
    engine: str
    params: SamplingParams
    engine_params: Mapping[str, Any]
    prompt: str | None = None
    prompt_token_ids: tuple[int, ...] | None = None
    emulated: tuple[str, ...] = ()
    tool_format: str | None = None
    prompt_logprobs: tuple[TokenLogprob | None, ...] | None = None
    """With `SamplingParams.prompt_logprobs`: one entry per prompt token (vLLM's meaning), None
    for the first, which nothing precedes."""

    @property
    def text(self) -> str:
        return self.samples[0].text

    @property
    def tool_calls(self) -> tuple[ToolCall, ...] | None:
        return self.samples[0].tool_calls

    @property
    def content(self) -> str | None:
        return self.samples[0].content

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
            "tool_format": self.tool_format,
            "samples": [
                {
                    "index": s.index,
                    "text": s.text,
                    "token_ids": list(s.token_ids),
                    "finish_reason": s.finish_reason,
                    "stop_reason": s.stop_reason,
                    "complete": s.complete,
                    "timing": s.timing.to_dict(),
                    **({} if s.tool_calls is None else {
                        "content": s.content,
                        "tool_calls": [c.to_openai() for c in s.tool_calls]}),
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

    With tools, `tool_calls` holds this chunk's pieces of the sample's tool calls and `content`
    the part of `text` outside them (what a server streams as ``delta.content``); without
    tools, `tool_calls` is None and `content` is `text`.
    """

    text: str
    token_ids: tuple[int, ...]
    index: int = 0
    finish_reason: FinishReason | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None  # of `token_ids`, when requested
    tool_calls: tuple[ToolCallDelta, ...] | None = None
    content: str | None = None

    def __post_init__(self) -> None:
        if self.tool_calls is None and self.content is None:
            object.__setattr__(self, "content", self.text)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


# -- scoring -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenScore:
    """One scored token: its log-probability under the model given everything before it.

    - `token_id`: the token (None from a text engine whose server does not say);
      `text`: its text as a text engine's server gave it (None from token-id engines).
    - `logprob`: None only where the engine could not score it (a text engine's first token,
      which nothing precedes).
    - `greedy`: whether it is the most likely token there (None: not asked, or the engine
      cannot tell); `rank`: 1 for the most likely token, where the engine says.
    - `top`: the most likely alternatives asked for, by id (token-id engines) or by text.
    """

    logprob: float | None
    token_id: int | None = None
    text: str | None = None
    greedy: bool | None = None
    rank: int | None = None
    top: Mapping[Any, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Score:
    """lm-eval's ``loglikelihood`` answer for one (context, continuation): `logprob`, the sum of
    the continuation tokens' log-probabilities, and `is_greedy`, whether greedy decoding from
    the context would produce exactly this continuation (None where the engine cannot tell).

    `tokens` are the continuation's tokens one by one; `context_tokens` how many tokens the
    context was (start token included), after `truncated` tokens were cut from its left.
    """

    logprob: float
    is_greedy: bool | None
    tokens: tuple[TokenScore, ...]
    context_tokens: int | None = None
    truncated: int = 0
    engine_params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def token_logprobs(self) -> tuple[float | None, ...]:
        return tuple(t.logprob for t in self.tokens)

    @property
    def token_ids(self) -> tuple[int, ...] | None:
        ids = tuple(t.token_id for t in self.tokens)
        return None if any(i is None for i in ids) else ids  # type: ignore[return-value]


@dataclass(frozen=True)
class RollingScore:
    """lm-eval's ``loglikelihood_rolling`` answer for one text: `logprob`, the sum over every
    token of the text, each given all the text before it (and the model's start token), the
    text cut into `windows` of at most the context length when it is longer.

    `scored` counts the tokens in the sum; `unscored` those an engine could not score (a text
    engine's first token when its server adds no start token).
    """

    logprob: float
    tokens: tuple[TokenScore, ...]
    windows: int = 1

    @property
    def scored(self) -> int:
        return sum(t.logprob is not None for t in self.tokens)

    @property
    def unscored(self) -> int:
        return len(self.tokens) - self.scored

    @property
    def token_logprobs(self) -> tuple[float | None, ...]:
        return tuple(t.logprob for t in self.tokens)

    @property
    def perplexity(self) -> float:
        """exp(-mean log-probability per scored token)."""
        return math.exp(-self.logprob / self.scored) if self.scored else math.nan


@dataclass(frozen=True)
class ScoreTiming:
    """One scoring call: its wall time, how many texts and tokens it scored, and how many tokens
    the engine read (`input_tokens`: contexts included; None from text engines)."""

    e2e: float
    requests: int
    tokens: int
    input_tokens: int | None = None

    @property
    def tokens_per_s(self) -> float | None:
        """Scored tokens per second of wall time."""
        return self.tokens / self.e2e if self.e2e > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {"e2e": self.e2e, "requests": self.requests, "tokens": self.tokens,
                "input_tokens": self.input_tokens, "tokens_per_s": self.tokens_per_s}


class Scores(list):
    """The results of one scoring call on a list (`Score`s or `RollingScore`s, in input order),
    plus `timing`: the whole call's `ScoreTiming`."""

    timing: ScoreTiming

    def __init__(self, items: list, timing: ScoreTiming):
        super().__init__(items)
        self.timing = timing
