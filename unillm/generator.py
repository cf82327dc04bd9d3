"""`Generator`: the one interface over every engine (batch, streaming, async, chat).

A call goes: `prepared.prepare` (validate, plan, tokenize) -> the engine runs, through
`calls.EngineCalls` -> `assembly` builds each sample's text, ids, finish reason and timing from
the `EngineResult`s the engine returned (streams: `streams.StreamAssembler`, the same rules).
This module only wires those steps together; sync and async differ only in the engine call.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any, overload

from .assembly import BatchOutcome
from .calls import EngineCalls
from .continuous import BatchSession, Dispatch, RunningMultiStream
from .engine import Engine, EngineRequest, RunningBatch
from .errors import (
    EngineError,
    GeneratorClosedError,
    InvalidPromptError,
    PartialBatchFailure,
    UnillmError,
)
from .planning import batch_groups
from .prepared import (
    Messages,
    ParamsLike,
    Prepared,
    PromptLike,
    TokensPrompt,
    as_params,
    per_prompt_params,
    prepare,
)
from .results import Completion, Completions, RollingScore, Score, Scores
from .scoring import (
    Pair,
    TextOrIds,
    afill_prompt_logprobs,
    fill_prompt_logprobs,
    prepare_pairs,
    prepare_rolling,
)
from .streams import AsyncStream, MultiStream, Stream
from .timing import now

__all__ = ["AsyncStream", "Generator", "InvalidPromptError", "MultiStream", "Prepared",
           "PromptLike", "Stream", "TokensPrompt"]

ToolChoice = str | Mapping[str, Any]
"""``"auto"``, ``"none"``, ``"required"`` or ``{"type": "function", "function": {"name"}}``."""


class Generator:
    """Generates text with one loaded engine. Get one from `unillm.load`.

    Every method takes the same `SamplingParams` (or a dict of its fields) whatever the engine;
    results carry their timing and the arguments the engine really received. Use as a context
    manager, or call `close()`, to free the engine.
    """

    def __init__(self, engine: Engine, *, engine_name: str, model: str,
                 tool_parser: str | None = None):
        self.engine = engine
        self.engine_name = engine_name
        self.model = model
        self.tool_parser = tool_parser  # the tool-call format, when the model cannot tell
        self._calls = EngineCalls(engine, engine_name)
        self._closed = False
        self._running: RunningBatch | None | bool = False  # False: not asked yet

    # -- facts -----------------------------------------------------------------------------
    @property
    def capabilities(self):
        """What the engine does natively (the rest is emulated by unillm or refused)."""
        return self.engine.capabilities

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    @property
    def batches_streams(self) -> bool:
        """True when `stream_many` runs its prompts as one native batch (the engine implements
        `Engine.stream_batch`); False when it streams them one after another."""
        return self._calls.native("stream_batch")

    def _native(self, method: str) -> bool:
        """Whether the engine implements `method` itself rather than inheriting the fallback."""
        return self._calls.native(method)

    @property
    def info(self) -> dict[str, Any]:
        """The engine, model, options and what the engine reports of itself (device, dtype,
        weight footprint...)."""
        return {
            "engine": self.engine_name,
            "model": self.model,
            "options": self.engine.options.model_dump(mode="json"),  # JSON-safe, secrets masked
            "context_length": self.engine.context_length,
            **self.engine.info(),
        }

    def __repr__(self) -> str:
        return f"<unillm.Generator engine={self.engine_name!r} model={self.model!r}>"

    # -- preparing a call ------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise GeneratorClosedError("this generator was closed; call unillm.load() again")

    def prepare(
        self,
        prompt: PromptLike | None = None,
        params: ParamsLike | None = None,
        *,
        messages: Messages | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: ToolChoice | None = None,
        parallel_tool_calls: bool | None = None,
        tool_parser: str | None = None,
    ) -> Prepared:
        """Validate, tokenize and plan one prompt (or conversation) now; run it later.

        Every error a call would raise about its input (`ContextLengthError`,
        `UnsupportedParameterError`, `InvalidPromptError`) is raised here, so a server can
        reject a request before queueing it. Pass the result, once, wherever a prompt is
        accepted (`generate`, `agenerate`, `stream`, `astream`, `stream_many`). The tool
        arguments are `chat`'s; with a prompt of token ids, the ids are taken as the
        conversation already rendered with the tools.
        """
        self._check_open()
        if (prompt is None) == (messages is None):
            raise InvalidPromptError("prepare() takes a prompt or messages, not both or neither")
        request = self._tool_request(tools, tool_choice, parallel_tool_calls, tool_parser)
        return prepare(self.engine, self.engine_name, prompt, as_params(params), messages,
                       request)

    def _tool_request(self, tools: Any, tool_choice: Any, parallel: Any, parser: Any) -> Any:
        if tools is None and tool_choice is None:
            return None
        from .tools.request import ToolRequest, tool_request

        if isinstance(tools, ToolRequest):  # validated already (the server's)
            return tools
        return tool_request(tools, tool_choice, parallel, parser or self.tool_parser)

    def _prepared(
        self,
        prompts: Sequence[PromptLike | Prepared] | None,
        params: ParamsLike | Sequence[ParamsLike] | None,
        conversations: Sequence[Messages] | None = None,
        tools: Any = None,
    ) -> list[Prepared]:
        self._check_open()
        count = len(conversations) if conversations is not None else len(prompts or ())
        per = per_prompt_params(params, count)
        if conversations is not None:
            jobs = [prepare(self.engine, self.engine_name, None, p, messages=m, tools=tools)
                    for m, p in zip(conversations, per)]
        else:
            jobs = [pr if isinstance(pr, Prepared)
                    else prepare(self.engine, self.engine_name, pr, p)
                    for pr, p in zip(prompts or (), per)]
        return [job.claim() for job in jobs]

    def _batches(self, jobs: list[Prepared]) -> list[list[EngineRequest]]:
        """Engine calls for these prompts: one, or one per distinct params for uniform engines."""
        requests = [r for j in jobs for r in j.requests]
        return [[requests[i] for i in group]
                for group in batch_groups(requests, self.engine.capabilities)]

    def _completions(self, jobs: list[Prepared], outcome: BatchOutcome, start: float) -> Completions:
        return outcome.completions(jobs, self._calls.decoder, start=start, end=now(),
                                   token_ids_engine=self.engine.capabilities.token_ids)

    # -- batch -----------------------------------------------------------------------------
    @staticmethod
    def _is_single(prompts: Any) -> bool:
        return isinstance(prompts, (str, Mapping, Prepared))

    @overload
    def generate(self, prompts: PromptLike, params: ParamsLike | None = None) -> Completion: ...
    @overload
    def generate(
        self, prompts: Sequence[PromptLike],
        params: ParamsLike | Sequence[ParamsLike] | None = None,
    ) -> Completions: ...

    def generate(self, prompts, params=None):
        """Generate for one prompt (returns a `Completion`) or a list (returns `Completions`,
        in input order, run natively as a batch).

        `params` is one `SamplingParams` (or dict of its fields) for all prompts, or one per
        prompt.
        """
        single = self._is_single(prompts)
        out = self._run(self._prepared([prompts] if single else list(prompts), params))
        return out[0] if single else out

    def _run(self, jobs: list[Prepared]) -> Completions:
        outcome = BatchOutcome(self.engine_name)
        start = now()
        fill_prompt_logprobs(self._calls, jobs)
        self._run_batches(self._batches(jobs), outcome)
        return self._completions(jobs, outcome, start)

    @overload
    async def agenerate(self, prompts: PromptLike, params: ParamsLike | None = None) -> Completion: ...
    @overload
    async def agenerate(
        self, prompts: Sequence[PromptLike],
        params: ParamsLike | Sequence[ParamsLike] | None = None,
    ) -> Completions: ...

    async def agenerate(self, prompts, params=None):
        """`generate` for asyncio: engines with an async API are awaited directly, the others
        run in a worker thread so the event loop stays free."""
        single = self._is_single(prompts)
        out = await self._arun(self._prepared([prompts] if single else list(prompts), params))
        return out[0] if single else out

    async def _arun(self, jobs: list[Prepared]) -> Completions:
        outcome = BatchOutcome(self.engine_name)
        start = now()
        await afill_prompt_logprobs(self._calls, jobs)
        batches = self._batches(jobs)
        if not self._calls.native("agenerate"):  # one worker thread, batches in order
            await asyncio.to_thread(self._run_batches, batches, outcome)
            return self._completions(jobs, outcome, start)

        async def one(batch: list[EngineRequest]) -> None:
            try:
                outcome.store(batch, await self._calls.agenerate(batch))
            except PartialBatchFailure as partial:
                outcome.store_partial(batch, partial.results, partial.errors)

        await asyncio.gather(*(one(b) for b in batches))
        return self._completions(jobs, outcome, start)

    def _run_batches(self, batches: list[list[EngineRequest]], outcome: BatchOutcome) -> None:
        for batch in batches:
            try:
                with self._calls.call():
                    outcome.store(batch, self.engine.generate(batch))
            except PartialBatchFailure as partial:
                outcome.store_partial(batch, partial.results, partial.errors)

    # -- chat ------------------------------------------------------------------------------
    @staticmethod
    def _is_conversation(messages: Any) -> bool:
        return bool(messages) and isinstance(messages[0], Mapping)

    def chat(self, messages, params=None, *, tools=None, tool_choice=None,
             parallel_tool_calls=None, tool_parser=None):
        """Chat through the model's chat template (or the server's, for HTTP engines).

        One conversation (a list of ``{"role", "content"}`` dicts) returns a `Completion`; a
        list of conversations returns `Completions`.

        `tools` (OpenAI's format) are rendered into the template; the calls the model makes
        are on `Completion.tool_calls` (finish reason ``tool_calls``). `tool_choice`:
        ``"auto"`` (the default with tools), ``"none"``, ``"required"`` or
        ``{"type": "function", "function": {"name": ...}}``; required and named calls are
        enforced by a grammar, so they always parse and validate. `tool_parser` names the
        model's tool-call format where it cannot be told from the model (docs/tools.md).
        """
        single = self._is_conversation(messages)
        convs = [messages] if single else list(messages)
        request = self._tool_request(tools, tool_choice, parallel_tool_calls, tool_parser)
        out = self._run(self._prepared(None, params, conversations=convs, tools=request))
        return out[0] if single else out

    async def achat(self, messages, params=None, *, tools=None, tool_choice=None,
                    parallel_tool_calls=None, tool_parser=None):
        """`chat` for asyncio."""
        single = self._is_conversation(messages)
        convs = [messages] if single else list(messages)
        request = self._tool_request(tools, tool_choice, parallel_tool_calls, tool_parser)
        out = await self._arun(self._prepared(None, params, conversations=convs, tools=request))
        return out[0] if single else out

    # -- streaming -------------------------------------------------------------------------
    def stream(self, prompt: PromptLike | Prepared, params: ParamsLike | None = None) -> Stream:
        """Stream one prompt: iterate for `Chunk`s; `stream.completion` once it has ended.

        Closing the stream early (``break`` inside ``with gen.stream(...) as s``) stops the
        engine; `completion` then holds what was generated, with finish reason ``abort``.
        """
        return Stream(self._calls, self._prepared([prompt], params)[0])

    def stream_chat(self, messages: Messages, params: ParamsLike | None = None, *,
                    tools: Sequence[Mapping[str, Any]] | None = None,
                    tool_choice: ToolChoice | None = None,
                    parallel_tool_calls: bool | None = None,
                    tool_parser: str | None = None) -> Stream:
        """`stream` for one conversation, through the chat template. With `tools` (as in
        `chat`), each `Chunk` carries its pieces of the tool calls (`Chunk.tool_calls`, as
        OpenAI streams them) and its `content`."""
        request = self._tool_request(tools, tool_choice, parallel_tool_calls, tool_parser)
        return Stream(self._calls, self._prepared(None, params, conversations=[messages],
                                                  tools=request)[0])

    def astream(self, prompt: PromptLike | Prepared, params: ParamsLike | None = None) -> AsyncStream:
        """`stream` for asyncio (``async for chunk in gen.astream(...)``)."""
        return AsyncStream(self._calls, self._prepared([prompt], params)[0])

    def astream_chat(self, messages: Messages, params: ParamsLike | None = None, *,
                     tools: Sequence[Mapping[str, Any]] | None = None,
                     tool_choice: ToolChoice | None = None,
                     parallel_tool_calls: bool | None = None,
                     tool_parser: str | None = None) -> AsyncStream:
        """`stream_chat` for asyncio."""
        request = self._tool_request(tools, tool_choice, parallel_tool_calls, tool_parser)
        return AsyncStream(self._calls, self._prepared(None, params, conversations=[messages],
                                                       tools=request)[0])

    def stream_many(
        self,
        prompts: Sequence[PromptLike | Prepared],
        params: ParamsLike | Sequence[ParamsLike] | None = None,
    ) -> MultiStream:
        """Stream several prompts at once: iterate for ``(index, item)`` pairs, where `index`
        is the prompt's position and `item` is each of its `Chunk`s, then its `Completion`.

        Where the engine has a running batch (continuous batching: `Engine.running_batch`) and
        it accepts every prompt, the prompts join it; otherwise they run as one native batch
        where the engine can stream a batch (`batches_streams`; engines with
        ``batch_params="uniform"`` get one batch per distinct parameters, one after another),
        else one after another. `MultiStream.cancel(index)`
        stops one prompt while the others go on (thread-safe: a server calls it when a client
        disconnects). Conversations go in as `prepare(messages=...)`.
        """
        jobs = self._prepared(list(prompts), params)
        running = self.running_batch()
        if running is not None and all(running.refusal(r) is None for j in jobs
                                       for r in j.requests):
            return RunningMultiStream(self._calls, running, jobs)
        return MultiStream(self._calls, jobs)

    def running_batch(self) -> RunningBatch | None:
        """The engine's running batch (continuous batching), started on first use; None when
        the engine has none (see `Engine.running_batch`)."""
        self._check_open()
        if self._running is False:
            with self._calls.call():
                self._running = self.engine.running_batch()
        return self._running  # type: ignore[return-value]

    def batch_session(self, dispatch: Dispatch) -> BatchSession | None:
        """A consumer's session in the engine's running batch (what `unillm serve` uses), or
        None when the engine has none. ``dispatch(fn, arg)`` must run ``fn(arg)`` later on the
        consumer's own thread (an event loop's ``call_soon_threadsafe``)."""
        running = self.running_batch()
        return None if running is None else BatchSession(self._calls, running, dispatch)

    # -- scoring ---------------------------------------------------------------------------
    @staticmethod
    def _is_pair(pairs: Any) -> bool:
        return isinstance(pairs, tuple) and len(pairs) == 2 and isinstance(pairs[0], (str, Mapping))

    def score(self, pairs: Pair | Sequence[Pair], *, top_logprobs: int = 0,
              truncate: bool = False) -> Score | Scores:
        """The log-probability of each continuation after its context (lm-eval's
        ``loglikelihood``): one ``(context, continuation)`` pair returns a `Score`, a list of
        pairs returns `Scores` (in order, run as one batch, with the call's `timing`).

        Each part is text or ``{"prompt_token_ids": [...]}``; docs/scoring.md says how text is
        tokenized (as lm-eval does). `top_logprobs` alternatives are returned per token. A pair
        longer than the context raises `ContextLengthError`, unless `truncate` cuts the
        context from its left (as lm-eval does). Engines that cannot score raise
        `UnsupportedParameterError` saying which can.
        """
        self._check_open()
        single = self._is_pair(pairs)
        call = prepare_pairs(self.engine, self.engine_name, [pairs] if single else list(pairs),
                             top_logprobs, truncate)
        start = now()
        out = call.assemble(self._calls.score(call.requests), now() - start)
        return out[0] if single else out

    async def ascore(self, pairs: Pair | Sequence[Pair], *, top_logprobs: int = 0,
                     truncate: bool = False) -> Score | Scores:
        """`score` for asyncio."""
        self._check_open()
        single = self._is_pair(pairs)
        call = prepare_pairs(self.engine, self.engine_name, [pairs] if single else list(pairs),
                             top_logprobs, truncate)
        start = now()
        out = call.assemble(await self._calls.ascore(call.requests), now() - start)
        return out[0] if single else out

    def score_rolling(self, texts: TextOrIds | Sequence[TextOrIds], *,
                      window: int | None = None) -> RollingScore | Scores:
        """The log-likelihood of whole texts (lm-eval's ``loglikelihood_rolling``; perplexity
        is `RollingScore.perplexity`): one text returns a `RollingScore`, a list `Scores`.
        A text longer than `window` tokens (default: the context length) is scored in windows,
        as lm-eval does (docs/scoring.md)."""
        self._check_open()
        single = self._is_single(texts)
        call = prepare_rolling(self.engine, self.engine_name, [texts] if single else list(texts),
                               window)
        start = now()
        out = call.assemble(self._calls.score(call.requests), now() - start)
        return out[0] if single else out

    async def ascore_rolling(self, texts: TextOrIds | Sequence[TextOrIds], *,
                             window: int | None = None) -> RollingScore | Scores:
        """`score_rolling` for asyncio."""
        self._check_open()
        single = self._is_single(texts)
        call = prepare_rolling(self.engine, self.engine_name, [texts] if single else list(texts),
                               window)
        start = now()
        out = call.assemble(await self._calls.ascore(call.requests), now() - start)
        return out[0] if single else out

    # -- lifetime --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the loaded model, as loaded (quantized, converted...), to the directory `path`,
        so that `unillm.load(engine, path)` loads it again without redoing that work.

        Raises `SaveNotSupportedError` when the engine, or its library for this model, cannot.
        """
        self._check_open()
        with self._calls.lock:
            try:
                self.engine.save(os.fspath(path))
            except UnillmError:
                raise
            except Exception as exc:
                raise EngineError(self.engine_name,
                                  f"save failed: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Free the engine. Further calls raise `GeneratorClosedError`."""
        if not self._closed:
            self._closed = True
            self.engine.close()

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

