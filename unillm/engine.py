"""The contract an engine plugin implements.

An engine only runs the model. It receives `EngineRequest`s whose `params` hold exactly what it
declared it does natively (`Capabilities.params`); unillm's core does the rest (stop strings,
stop token ids, n, detokenizing, timing) once for every engine, or refuses with
`UnsupportedParameterError`.

An engine returns what it did, as vLLM's `RequestOutput` does: `generate` returns one
`EngineResult` per request (its samples, the arguments really passed to the engine's library,
the prompt's token count where the engine counts it, engine-side timings), and a stream hands the
same record over on an event's `result`. The `EngineRequest` it is given is input only, plus
`abort()` and the stop hook; nothing is reported by writing on it.
"""

from __future__ import annotations

import abc
import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from .errors import PartialBatchFailure
from .params import SamplingParams
from .results import TokenLogprob, TokenScore, ToolCall, ToolCallDelta
from .structured import KINDS

if TYPE_CHECKING:
    from .decoding import SampleTracker

__all__ = [  # the plugin contract; PartialBatchFailure lives with the other errors
    "ALL_FIELDS", "EMULATED_BY_CORE", "Capabilities", "Engine", "EngineOptions", "EngineRequest",
    "EngineResult", "EngineSequence", "Knob", "PartialBatchFailure", "RunningBatch",
    "ScoreRequest", "ScoreResult", "StepSink", "TokenEvent", "TokenScore", "Tokenizer",
    "stream_as_batch_of_one",
]

ALL_FIELDS: frozenset[str] = frozenset(SamplingParams.model_fields)

EMULATED_BY_CORE: frozenset[str] = frozenset({"stop", "stop_token_ids", "n", "prompt_logprobs",
                                              "skip_special_tokens"})
"""Fields unillm implements itself for an engine that lacks them (see docs/sampling.md);
`prompt_logprobs` only on an engine that can score (`Capabilities.score`), and
`skip_special_tokens` only on an engine that returns token ids (the core decodes them)."""


@runtime_checkable
class Tokenizer(Protocol):
    """What the core needs from a model's tokenizer.

    Optionally also `vocab_size` (an int), which a server uses to refuse token ids outside
    the vocabulary before they reach (and fail) a shared batch, `encode_plain(text)`
    (ids without special tokens), which `bad_words` needs, `bos_token_id` (an int or
    None), the start token that scoring puts before an empty context when `encode` adds none,
    and `decode_with_special(ids)` (`decode` keeping special tokens, equally prefix-stable),
    which `SamplingParams.skip_special_tokens=False` needs.
    """

    eos_token_ids: frozenset[int]

    def encode(self, text: str) -> list[int]:
        """Ids of `text` as the model expects a prompt (with its bos token if it uses one)."""

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, special tokens skipped, no clean-up of spaces (prefix-stable)."""

    def chat_token_ids(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Prompt ids for a conversation, through the model's chat template."""

    def chat_text(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The same prompt as text."""


@dataclass(frozen=True)
class Capabilities:
    """What an engine does itself.

    - `params`: SamplingParams fields honoured natively for any value.
    - `batch_params`: ``per_request`` if one native batch call can mix parameters,
      ``uniform`` if the core must group requests by parameters first.
    - `token_ids`: the engine takes prompt ids and yields token ids; False for text engines
      (HTTP servers), whose prompt is text and whose output is text deltas.
    - `chat`: the engine takes chat messages itself (servers apply their own template).
    - `stop_hook`: during `generate`, the engine calls `request.should_stop(index, ids)` after
      each token (text engines: `should_stop(index, text=delta)`) and stops that sample when it
      returns True (so emulated stops end generation early instead of after max_tokens).
    - `concurrent`: calls may overlap from several threads; otherwise the core serialises them.
    - `structured_kinds`, `structured_whitespace`: with ``structured`` in `params`, the kinds of
      constraint (json_schema, regex, choice, grammar) and the JSON whitespace modes it
      enforces exactly; the planner refuses the others.
    - `not_with_structured`: fields it cannot combine with a constraint.
    - `notes`: why it refuses a field (or a kind of constraint, keyed ``structured``), shown
      in the refusal; not part of the capabilities' identity.
    - `tools`: a `chat` engine sends tools to its server, which renders and parses them
      (requests carry `EngineRequest.tools`; results carry the server's calls). Token-id
      engines leave it False: unillm renders and reads tools for them (docs/tools.md).
    - `limits`: ``(field, low, high)`` for native fields whose values the engine accepts only
      in a narrower range than `SamplingParams` allows (vLLM: temperature <= 2). The planner
      refuses a value outside it before the request is queued, instead of letting the engine
      fail inside a batch (or a server answer 500).
    - `score`: the engine implements `Engine.score` (log-probabilities of given text); without
      it `score_refusal` says why, and which engines or servers can, for the error the core
      raises (`Generator.score`, `SamplingParams.prompt_logprobs`).
    """

    params: frozenset[str]
    batch_params: Literal["uniform", "per_request"] = "uniform"
    token_ids: bool = True
    chat: bool = False
    stop_hook: bool = False
    concurrent: bool = False
    structured_kinds: frozenset[str] = frozenset(KINDS)
    structured_whitespace: frozenset[str] = frozenset({"compact", "flexible"})
    not_with_structured: frozenset[str] = frozenset()
    notes: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    tools: bool = False
    limits: tuple[tuple[str, float, float], ...] = ()
    score: bool = False
    score_refusal: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.params) - ALL_FIELDS
        if unknown:
            raise ValueError(f"Capabilities.params names unknown fields: {sorted(unknown)}")
        unlimited = {name for name, _, _ in self.limits} - set(self.params)
        if unlimited:
            raise ValueError(f"Capabilities.limits names fields the engine does not honour "
                             f"natively: {sorted(unlimited)}")
        missing = {"max_tokens", "temperature"} - set(self.params)
        if missing:
            raise ValueError(f"every engine must honour {sorted(missing)} natively")


@dataclass(frozen=True)
class Knob:
    """A tunable engine option for `unillm tune`: an int/float range or a set of choices."""

    kind: Literal["int", "float", "choice"]
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    log: bool = False
    help: str = ""


@dataclass(eq=False)
class EngineRequest:
    """One prompt for the engine: what to do. Input only: the engine reports what it did in
    the `EngineResult` it returns (or streams) for this request."""

    params: SamplingParams
    prompt: str | None = None
    prompt_token_ids: list[int] | None = None
    messages: list[dict[str, Any]] | None = None
    trackers: list[SampleTracker] | None = field(default=None, repr=False)
    tools: dict[str, Any] | None = None  # chat engines with `Capabilities.tools`: the OpenAI
    # request fields (tools, tool_choice, parallel_tool_calls) to send with `messages`
    _aborted: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    def abort(self) -> None:
        """Ask the engine to stop this request while the rest of its batch goes on (its caller
        left, or an emulated stop fired). Thread-safe; see `Engine.stream_batch`."""
        self._aborted.set()

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def should_stop(
        self, index: int, token_ids: Sequence[int] = (), text: str | None = None
    ) -> bool:
        """Called by engines with `stop_hook` after each new token of sample `index` (text
        engines pass the new text instead of ids)."""
        if self.trackers is None:
            return False
        return self.trackers[index].should_stop(token_ids, text)


@dataclass
class EngineSequence:
    """One finished sample from `Engine.generate`.

    `token_times` are `unillm.timing.now()` stamps of each token's production, when the engine
    exposes a per-token hook; `finish_reason` is ``stop`` (eos, a native stop) or ``length``.
    """

    token_ids: list[int]
    finish_reason: str
    stop_reason: str | int | None = None
    text: str | None = None
    token_times: list[float] | None = None
    logprobs: list[TokenLogprob] | None = None
    output_tokens: int | None = None  # text engines: the server's count of generated tokens
    mask_s: float | None = None  # with `structured`: time spent computing this sample's masks
    tool_calls: list[ToolCall] | None = None  # engines with `Capabilities.tools`: the server's


@dataclass
class EngineResult:
    """What the engine did for one request: the engine's half of a `Completion`.

    - `samples`: the finished sequences (n of them when `n` is native, else one). Empty on a
      stream's result, whose tokens came in the events.
    - `received`: the arguments the engine really passed to its library or server for this
      request, after translation (CTranslate2's ``sampling_topk``, a server's request body).
    - `prompt_tokens`: the prompt's length in tokens as the engine counted it; needed from text
      engines (a server's ``usage``), ignored for token-id engines, whose prompt ids unillm has.
    - `ttft`: the engine's own time to first token in seconds from the call's start, when it
      measures one in a batch call (vLLM's request metrics); streams are timed by unillm.
    """

    samples: list[EngineSequence] = field(default_factory=list)
    received: Mapping[str, Any] = field(default_factory=dict)
    prompt_tokens: int | None = None
    ttft: float | None = None
    compile_s: float | None = None  # with `structured`: compiling the constraint (0 if cached)
    prompt_logprobs: list[TokenLogprob | None] | None = None  # native `prompt_logprobs`: one
    # per prompt token, None for the first (nothing precedes it)


@dataclass(frozen=True)
class ScoreRequest:
    """Text to score (`Engine.score`): the log-probability of each continuation token given
    everything before it. Token-id engines get ids (`context_ids` holds at least the start
    token); text engines (`Capabilities.token_ids` False) get the two texts instead.

    `top`: None asks for each token's own log-probability only (perplexity); k >= 0 also asks
    whether each token is the most likely one (`TokenScore.greedy`, lm-eval's is_greedy), its
    `rank` where the engine knows it, and the k most likely alternatives (`TokenScore.top`).
    """

    context_ids: tuple[int, ...] = ()
    continuation_ids: tuple[int, ...] = ()
    context: str | None = None
    continuation: str | None = None
    top: int | None = None


@dataclass
class ScoreResult:
    """What the engine computed for one `ScoreRequest`: one `TokenScore` per continuation token
    (text engines: per token of the server's own tokenization of the continuation), and the
    arguments it really passed to its library or server (`received`)."""

    tokens: list[TokenScore] = field(default_factory=list)
    received: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class TokenEvent:
    """One step of `Engine.stream`: new token ids (or text, for text engines) of sample `index`.

    The last event of a sample carries its `finish_reason` (and, for text engines, the
    server's `output_tokens` count when it sends one). A text engine whose server says how
    many tokens a piece of text came from sets `tokens` (a server may send several tokens in
    one chunk); otherwise each event with text counts as one token for timing.

    `result` reports what the engine did for the event's request (see `EngineResult`; its
    `samples` stay empty). An engine sends it once per request, at the latest with the request's
    last event: on its own event without tokens (``TokenEvent(result=...)``) or on a token's.
    """

    index: int = 0
    token_ids: Sequence[int] = ()
    text: str | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    logprobs: list[TokenLogprob] | None = None
    output_tokens: int | None = None
    tokens: int | None = None
    result: EngineResult | None = None
    tool_calls: list[ToolCallDelta] | None = None  # `Capabilities.tools`: the server's pieces

    @property
    def token_count(self) -> int:
        """How many output tokens this event stands for (token ids, else `tokens`, else one
        per piece of text)."""
        if self.token_ids:
            return len(self.token_ids)
        if self.tokens is not None:
            return self.tokens
        return 1 if (self.text or self.tool_calls) else 0


class EngineOptions(BaseModel):
    """Base of each engine's options schema: unknown options are an error naming them."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class Engine(abc.ABC):
    """Base class of every engine. Subclasses import their library inside `__init__`."""

    Options: ClassVar[type[EngineOptions]] = EngineOptions
    tunables: ClassVar[Mapping[str, Knob]] = {}
    local: ClassVar[bool] = True
    """True when `model` is a local checkpoint the engine runs in-process (False for HTTP
    engines, which talk to a server): the demo and the conformance suite use local ones."""

    name: str = ""
    capabilities: Capabilities
    tokenizer: Tokenizer | None = None
    context_length: int | None = None

    def __init__(self, model: str, options: EngineOptions):
        self.model = model
        self.options = options
        self._lock = threading.Lock()

    @abc.abstractmethod
    def generate(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        """Run a batch; for each request, in order, its `EngineResult` (n samples if `n` is
        native). A sample ending on a terminating token (eos, a stop token id) includes that
        token in its `token_ids`: unillm's decoding drops it from the text and names it."""

    @abc.abstractmethod
    def stream(self, request: EngineRequest) -> Iterator[TokenEvent]:
        """Yield tokens as they are produced. Closing the iterator must stop generation."""

    def stream_batch(self, requests: Sequence[EngineRequest]) -> Iterator[tuple[int, TokenEvent]]:
        """Stream a batch: yield ``(index into requests, event)`` as tokens are produced.

        An engine that can stream several prompts in one native batch overrides this (a server
        then batches streaming clients instead of running them one after another). It must
        stop producing a request's tokens soon after `request.aborted` becomes true, without
        ending the others; closing the iterator must stop the whole batch. This default is
        correct but not batched: the requests stream one after another through `stream`.
        """
        for index, request in enumerate(requests):
            if request.aborted:
                continue
            events = self.stream(request)
            try:
                for event in events:
                    yield index, event
                    if request.aborted:
                        break
            finally:
                close = getattr(events, "close", None)
                if close is not None:
                    close()

    async def agenerate(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        """Async batch; engines with an async API override this, others run in a thread."""
        return await asyncio.to_thread(self.generate, requests)

    def astream(self, request: EngineRequest) -> AsyncIterator[TokenEvent]:
        """Async stream; by default the sync `stream` runs in a thread."""
        from ._threads import iterate_in_thread

        return iterate_in_thread(lambda: self.stream(request))

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Score a batch (only called where `capabilities.score` is True): for each request, in
        order, the log-probability of every continuation token given everything before it,
        computed from the model's raw distribution (no temperature or other processing)."""
        raise NotImplementedError(f"{type(self).__name__} declares no score capability")

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Async `score`; engines with an async API override this, others run in a thread."""
        return await asyncio.to_thread(self.score, requests)

    def running_batch(self) -> RunningBatch | None:
        """The engine's running batch (continuous batching), or None if it has none.

        An engine that implements one returns the same object on every call (created on the
        first); `unillm serve` and `Generator.stream_many` then run each request that it accepts
        there instead of in a batch of their own. The default: no running batch."""
        return None

    def info(self) -> dict[str, Any]:
        """Facts about the loaded model for `Generator.info` (device, dtype, weight bytes...)."""
        return {}

    def save(self, path: str) -> None:
        """Write the loaded model (as transformed at load, e.g. quantized) to `path`, in a form
        this engine loads again. Engines that cannot save keep this default, which says so."""
        from .errors import SaveNotSupportedError

        raise SaveNotSupportedError(self.name or type(self).__name__,
                                    "this engine does not implement save()")

    def close(self) -> None:
        """Free the engine's resources (GPU memory, worker processes, connections)."""


StepSink = Callable[[list[tuple[EngineRequest, "TokenEvent | BaseException"]]], None]
"""What a `RunningBatch` calls once per step with that step's events for the requests added
with this sink: ``(request, event)`` pairs, or ``(request, exception)`` for a request that
failed (its last)."""


class RunningBatch(abc.ABC):
    """A batch that keeps running while requests join and leave it at any step (continuous,
    or iteration-level, batching: vLLM's scheduler, transformers' continuous-batching manager,
    llama.cpp's server slots).

    Without one, a request that arrives while a batch runs waits for the whole batch to end;
    with one, it joins at the next step, and a finished or cancelled request's slot (rows, KV
    memory) goes to the next request at once. The engine runs the batch in its own thread and
    reports through the `StepSink` each request was added with; the core turns those events
    into chunks (detokenizing, stop strings, timing) exactly as for `Engine.stream`, so a
    request's tokens must not depend on its batch-mates (greedy tokens equal the engine's
    static path). Requests with parameters the batch cannot vary per request are refused
    (`refusal`) and run on the engine's other paths.
    """

    @abc.abstractmethod
    def refusal(self, request: EngineRequest) -> str | None:
        """None if `request` can run here, else the name of what it cannot honour here (a
        `SamplingParams` field, or ``prompt`` for one larger than the batch's memory)."""

    @abc.abstractmethod
    def add(self, request: EngineRequest, sink: StepSink) -> None:
        """Join the batch at its next step (thread-safe, never blocks on the model).

        After each step, the engine calls `sink` once, from its own thread, with the events of
        that step for every request added with that sink; a request's last event carries its
        `finish_reason` (each of its `n` samples'), its first (or an earlier) its
        `EngineResult`. A failure ends the request with an exception instead."""

    @abc.abstractmethod
    def cancel(self, request: EngineRequest) -> None:
        """Leave the batch: no more events for `request`, and its slot is freed before the
        next step (thread-safe; a finished or unknown request is ignored)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Stop the batch's thread and free its memory (the engine's `close` calls it)."""


def stream_as_batch_of_one(engine: Engine, request: EngineRequest) -> Iterator[TokenEvent]:
    """`Engine.stream` for an engine whose native streaming is `stream_batch`: one code path
    for both, so a single stream behaves exactly like a row of a batch."""
    events = engine.stream_batch([request])
    try:
        for _, event in events:
            yield event
    finally:
        events.close()
