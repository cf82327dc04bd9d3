"""`Generator`: the one interface over every engine (batch, streaming, async, chat).

A call goes: validate and plan (`planning.plan`) -> the engine runs -> `decoding.finalize`
builds each sample's text, ids and finish reason -> `Timing` from the recorded times. Sync and
async paths share every step but the engine call itself.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypedDict, TypeVar, overload

from .decoding import Final, SampleTracker, finalize
from .engine import Engine, EngineRequest, EngineSequence, PartialBatchFailure, TokenEvent
from .errors import BatchError, ContextLengthError, EngineError, GeneratorClosedError, UnillmError
from .params import SamplingParams
from .planning import Plan, batch_groups, plan
from .results import Chunk, Completion, Completions, Sample
from .timing import RunTiming, Timing, TimingSource, now


class TokensPrompt(TypedDict):
    """A prompt given as token ids instead of text: ``{"prompt_token_ids": [...]}``."""

    prompt_token_ids: list[int]


PromptLike = str | TokensPrompt
_T = TypeVar("_T")
Messages = Sequence[Mapping[str, Any]]
_Results = dict[EngineRequest, list[EngineSequence]]
_Failures = dict[EngineRequest, UnillmError]


class InvalidPromptError(UnillmError, ValueError):
    """The prompt is empty or of a type unillm does not accept."""


@dataclass(eq=False)
class _Job:
    """One prompt of a call: its plan and the engine requests that serve it.

    `Generator.prepare` hands one out as a `Prepared` so that a caller (a server) can validate
    and tokenize a prompt when it arrives and run it later, in a batch with others. Its engine
    requests carry per-run state, so it runs once.
    """

    params: SamplingParams
    plan: Plan
    requests: list[EngineRequest]
    prompt: str | None = None
    prompt_ids: list[int] | None = None
    claimed: bool = False

    @property
    def batch_key(self) -> tuple[SamplingParams, ...]:
        """Prepared prompts with equal keys can share one native batch on any engine
        (engines with ``batch_params="uniform"`` need equal engine parameters)."""
        return tuple(r.params for r in self.requests)


Prepared = _Job
"""A prompt validated, tokenized and planned by `Generator.prepare`, ready to run once."""


def _make_timing(
    start: float,
    end: float,
    times: Sequence[float] | None,
    source: TimingSource,
    prompt_tokens: int | None,
    output_tokens: int,
    ttft: float | None = None,
) -> Timing:
    if times:
        rel = tuple(t - start for t in times)
        e2e = rel[-1] if source in ("stream", "callback") else end - start
        return Timing(e2e, rel, prompt_tokens, output_tokens, source)
    return Timing(end - start, None, prompt_tokens, output_tokens,
                  "engine" if ttft is not None else "end", ttft_override=ttft)


class Generator:
    """Generates text with one loaded engine. Get one from `unillm.load`.

    Every method takes the same `SamplingParams` whatever the engine; results carry their
    timing and the arguments the engine really received. Use as a context manager, or call
    `close()`, to free the engine.
    """

    def __init__(self, engine: Engine, *, engine_name: str, model: str):
        self.engine = engine
        self.engine_name = engine_name
        self.model = model
        self._lock = threading.RLock()
        self._closed = False

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
        return self._native("stream_batch")

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

    def _job(
        self,
        prompt: PromptLike | None,
        params: SamplingParams,
        messages: Messages | None = None,
    ) -> _Job:
        engine = self.engine
        caps = engine.capabilities
        tok = engine.tokenizer
        eos = tok.eos_token_ids if tok is not None else frozenset()
        the_plan = plan(params, caps, self.engine_name, eos)

        text: str | None = None
        ids: list[int] | None = None
        msgs: list[dict[str, Any]] | None = None
        if messages is not None:
            if caps.chat:
                msgs = [dict(m) for m in messages]
            elif tok is None:
                raise InvalidPromptError(f"engine {self.engine_name!r} has no tokenizer for chat")
            else:
                ids = tok.chat_token_ids(messages)
        elif isinstance(prompt, str):
            text = prompt
            if caps.token_ids:
                if tok is None:  # pragma: no cover - an engine contract violation
                    raise EngineError(self.engine_name, "a token-id engine without a tokenizer")
                ids = tok.encode(prompt)
        elif isinstance(prompt, Mapping) and "prompt_token_ids" in prompt:
            ids = [int(i) for i in prompt["prompt_token_ids"]]
            if not caps.token_ids:
                raise InvalidPromptError(
                    f"engine {self.engine_name!r} takes text prompts, not token ids"
                )
        else:
            raise InvalidPromptError(
                "a prompt is a string or {'prompt_token_ids': [...]}, not "
                f"{type(prompt).__name__}"
            )
        if ids is not None and not ids:
            raise InvalidPromptError(
                "the prompt is empty and the tokenizer adds no start token: nothing to continue"
            )
        ctx = engine.context_length
        if ids is not None and ctx is not None and len(ids) + params.max_tokens > ctx:
            raise ContextLengthError(len(ids), params.max_tokens, ctx)

        requests = []
        for replica_params in the_plan.replicas:
            req = EngineRequest(
                params=replica_params, prompt=text,
                prompt_token_ids=list(ids) if ids is not None else None,
                messages=msgs,
            )
            if caps.stop_hook and the_plan.rules.active:
                req.trackers = [
                    SampleTracker(tok.decode if tok else None, the_plan.rules)
                    for _ in range(replica_params.n)
                ]
            requests.append(req)
        return _Job(params, the_plan, requests, prompt=text, prompt_ids=ids)

    def prepare(
        self,
        prompt: PromptLike | None = None,
        params: SamplingParams | None = None,
        *,
        messages: Messages | None = None,
    ) -> Prepared:
        """Validate, tokenize and plan one prompt (or conversation) now; run it later.

        Every error a call would raise about its input (`ContextLengthError`,
        `UnsupportedParameterError`, `InvalidPromptError`) is raised here, so a server can
        reject a request before queueing it. Pass the result, once, wherever a prompt is
        accepted (`generate`, `agenerate`, `stream`, `astream`, `stream_many`).
        """
        self._check_open()
        if (prompt is None) == (messages is None):
            raise InvalidPromptError("prepare() takes a prompt or messages, not both or neither")
        return self._job(prompt, params or SamplingParams(), messages=messages)

    @staticmethod
    def _unclaimed(job: _Job) -> _Job:
        if job.claimed:
            raise InvalidPromptError("a prepared prompt runs once: prepare() it again")
        return job

    def _jobs(
        self,
        prompts: Sequence[PromptLike | Prepared] | None,
        params: SamplingParams | Sequence[SamplingParams] | None,
        conversations: Sequence[Messages] | None = None,
    ) -> list[_Job]:
        self._check_open()
        count = len(conversations) if conversations is not None else len(prompts or ())
        if params is None:
            per = [SamplingParams()] * count
        elif isinstance(params, SamplingParams):
            per = [params] * count
        else:
            per = list(params)
            if len(per) != count:
                raise ValueError(f"got {count} prompts but {len(per)} SamplingParams")
        if conversations is not None:
            jobs = [self._job(None, p, messages=m) for m, p in zip(conversations, per)]
        else:
            jobs = [self._unclaimed(pr) if isinstance(pr, _Job) else self._job(pr, p)
                    for pr, p in zip(prompts or (), per)]
        for job in jobs:
            job.claimed = True
        return jobs

    def _batches(self, jobs: list[_Job]) -> list[list[EngineRequest]]:
        """Engine calls for these jobs: one, or one per distinct params for uniform engines."""
        requests = [r for j in jobs for r in j.requests]
        return [[requests[i] for i in group]
                for group in batch_groups(requests, self.engine.capabilities)]

    # -- finishing a call ------------------------------------------------------------------
    def _decode(self) -> Callable[[Sequence[int]], str] | None:
        tok = self.engine.tokenizer
        return tok.decode if (tok is not None and self.engine.capabilities.token_ids) else None

    def _sample(
        self, job: _Job, req: EngineRequest, seq: EngineSequence, index: int,
        start: float, end: float,
    ) -> Sample:
        final = finalize(
            seq.token_ids, self._decode(), job.plan.rules, engine_finish=seq.finish_reason,
            engine_stop_reason=seq.stop_reason, engine_text=seq.text,
        )
        kept = len(final.token_ids)
        if self.engine.capabilities.token_ids:
            output_tokens = kept
        else:  # text engines: the server's own count
            output_tokens = seq.output_tokens if seq.output_tokens is not None else len(seq.token_ids)
        times = seq.token_times[:kept] if (seq.token_times and kept) else seq.token_times
        prompt_tokens = len(job.prompt_ids) if job.prompt_ids is not None else req.prompt_tokens
        timing = _make_timing(
            start, end, times, "callback", prompt_tokens, output_tokens,
            ttft=req.metrics.get("ttft"),
        )
        return self._to_sample(final, index, timing, seq.logprobs)

    @staticmethod
    def _to_sample(final: Final, index: int, timing: Timing, logprobs) -> Sample:
        lp = tuple(logprobs[: len(final.token_ids)]) if logprobs is not None else None
        return Sample(index, final.text, final.token_ids, final.finish_reason,  # type: ignore[arg-type]
                      timing, final.stop_reason, lp)

    def _completion(self, job: _Job, samples: list[Sample]) -> Completion:
        for i in range(1, job.plan.copies):
            samples.append(replace(samples[0], index=i))
        received = job.requests[0].received if job.requests else {}
        if len(job.requests) > 1:
            received = {**received, "requests": len(job.requests)}
        return Completion(
            samples=tuple(samples), engine=self.engine_name, params=job.params,
            engine_params=received, prompt=job.prompt,
            prompt_token_ids=tuple(job.prompt_ids) if job.prompt_ids is not None else None,
            emulated=job.plan.emulated,
        )

    def _collect(
        self, jobs: list[_Job], done: _Results, start: float, end: float,
        failed: _Failures | None = None,
    ) -> Completions:
        """The call's `Completions`, or `BatchError` if some requests failed (see
        `PartialBatchFailure`): a prompt fails when any of its engine requests did."""
        out = []
        errors: dict[int, UnillmError] = {}
        partial: list[Completion | None] = []
        for index, job in enumerate(jobs):
            error = next((failed[r] for r in job.requests if failed and r in failed), None)
            if error is not None:
                errors[index] = error
                partial.append(None)
                continue
            samples: list[Sample] = []
            for req in job.requests:
                for seq in done[req]:
                    samples.append(self._sample(job, req, seq, len(samples), start, end))
            out.append(self._completion(job, samples))
            partial.append(out[-1])
        if errors:
            raise BatchError(self.engine_name, errors, partial)
        prompt_tokens = [s.timing.prompt_tokens for c in out for s in c.samples[:1]]
        run = RunTiming(
            wall=end - start, requests=len(out),
            prompt_tokens=None if any(p is None for p in prompt_tokens) else sum(prompt_tokens),  # type: ignore[arg-type]
            output_tokens=sum(s.timing.output_tokens for c in out for s in c.samples),
        )
        return Completions(out, run)

    def _store(
        self, done: _Results, batch: list[EngineRequest], results: list[list[EngineSequence]]
    ) -> None:
        if len(results) != len(batch):
            raise EngineError(
                self.engine_name, f"returned {len(results)} results for {len(batch)} requests"
            )
        done.update(zip(batch, results))

    def _store_partial(
        self, done: _Results, failed: _Failures, batch: list[EngineRequest],
        partial: PartialBatchFailure,
    ) -> None:
        """Keep what an engine completed of a batch, and why the rest failed."""
        if len(partial.results) != len(batch):
            raise EngineError(
                self.engine_name, f"returned {len(partial.results)} results for {len(batch)} requests"
            )
        for i, (req, result) in enumerate(zip(batch, partial.results)):
            if result is not None and i not in partial.errors:
                done[req] = result
                continue
            exc = partial.errors.get(i) or EngineError(self.engine_name, "no result")
            if not isinstance(exc, UnillmError):
                wrapped = EngineError(self.engine_name, f"{type(exc).__name__}: {exc}")
                wrapped.__cause__ = exc
                exc = wrapped
            failed[req] = exc

    @contextmanager
    def _engine_call(self):
        """Serialise engines that are not thread-safe, and turn their failures into
        `EngineError` (the caller's process keeps running)."""
        lock = self._lock if not self.engine.capabilities.concurrent else None
        if lock is not None:
            lock.acquire()
        try:
            yield
        except UnillmError:
            raise
        except Exception as exc:
            raise EngineError(self.engine_name, f"{type(exc).__name__}: {exc}") from exc
        finally:
            if lock is not None:
                lock.release()

    # -- batch -----------------------------------------------------------------------------
    @overload
    def generate(self, prompts: PromptLike, params: SamplingParams | None = None) -> Completion: ...
    @overload
    def generate(
        self, prompts: Sequence[PromptLike],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
    ) -> Completions: ...

    def generate(self, prompts, params=None):
        """Generate for one prompt (returns a `Completion`) or a list (returns `Completions`,
        in input order, run natively as a batch).

        `params` is one `SamplingParams` for all prompts or one per prompt.
        """
        single = isinstance(prompts, (str, Mapping, _Job))
        jobs = self._jobs([prompts] if single else list(prompts), params)
        out = self._run_batch(jobs)
        return out[0] if single else out

    def _run_batch(self, jobs: list[_Job]) -> Completions:
        done: _Results = {}
        failed: _Failures = {}
        start = now()
        for batch in self._batches(jobs):
            with self._engine_call():
                try:
                    self._store(done, batch, self.engine.generate(batch))
                except PartialBatchFailure as partial:
                    self._store_partial(done, failed, batch, partial)
        end = now()
        return self._collect(jobs, done, start, end, failed)

    @overload
    async def agenerate(self, prompts: PromptLike, params: SamplingParams | None = None) -> Completion: ...
    @overload
    async def agenerate(
        self, prompts: Sequence[PromptLike],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
    ) -> Completions: ...

    async def agenerate(self, prompts, params=None):
        """`generate` for asyncio: engines with an async API are awaited directly, the others
        run in a worker thread so the event loop stays free."""
        single = isinstance(prompts, (str, Mapping, _Job))
        jobs = self._jobs([prompts] if single else list(prompts), params)
        out = await self._arun_batch(jobs)
        return out[0] if single else out

    def _native(self, method: str) -> bool:
        """Whether the engine overrides the base class's fallback for `method`."""
        return getattr(type(self.engine), method) is not getattr(Engine, method)

    _native_async = _native

    async def _arun_batch(self, jobs: list[_Job]) -> Completions:
        done: _Results = {}
        failed: _Failures = {}
        start = now()
        batches = self._batches(jobs)
        if self._native_async("agenerate"):
            async def one(batch: list[EngineRequest]) -> None:
                try:
                    self._store(done, batch, await self.engine.agenerate(batch))
                except PartialBatchFailure as partial:
                    self._store_partial(done, failed, batch, partial)
                except UnillmError:
                    raise
                except Exception as exc:
                    raise EngineError(self.engine_name, f"{type(exc).__name__}: {exc}") from exc

            await asyncio.gather(*(one(b) for b in batches))
        else:
            def run_all() -> None:
                for batch in batches:
                    with self._engine_call():
                        try:
                            self._store(done, batch, self.engine.generate(batch))
                        except PartialBatchFailure as partial:
                            self._store_partial(done, failed, batch, partial)

            await asyncio.to_thread(run_all)
        end = now()
        return self._collect(jobs, done, start, end, failed)

    # -- chat ------------------------------------------------------------------------------
    @staticmethod
    def _is_conversation(messages: Any) -> bool:
        return bool(messages) and isinstance(messages[0], Mapping)

    def chat(self, messages, params=None):
        """Chat through the model's chat template (or the server's, for HTTP engines).

        One conversation (a list of ``{"role", "content"}`` dicts) returns a `Completion`; a
        list of conversations returns `Completions`.
        """
        single = self._is_conversation(messages)
        convs = [messages] if single else list(messages)
        out = self._run_batch(self._jobs(None, params, conversations=convs))
        return out[0] if single else out

    async def achat(self, messages, params=None):
        single = self._is_conversation(messages)
        convs = [messages] if single else list(messages)
        out = await self._arun_batch(self._jobs(None, params, conversations=convs))
        return out[0] if single else out

    # -- streaming -------------------------------------------------------------------------
    def stream(self, prompt: PromptLike, params: SamplingParams | None = None) -> Stream:
        """Stream one prompt: iterate for `Chunk`s; `stream.completion` once it has ended.

        Closing the stream early (``break`` inside ``with gen.stream(...) as s``) stops the
        engine; `completion` then holds what was generated, with finish reason ``abort``.
        """
        return self._stream(self._jobs([prompt], params)[0])

    def stream_chat(self, messages: Messages, params: SamplingParams | None = None) -> Stream:
        """`stream` for one conversation, through the chat template."""
        return self._stream(self._jobs(None, params, conversations=[messages])[0])

    def astream(self, prompt: PromptLike, params: SamplingParams | None = None) -> AsyncStream:
        """`stream` for asyncio (``async for chunk in gen.astream(...)``)."""
        return self._astream(self._jobs([prompt], params)[0])

    def astream_chat(self, messages: Messages, params: SamplingParams | None = None) -> AsyncStream:
        return self._astream(self._jobs(None, params, conversations=[messages])[0])

    def stream_many(
        self,
        prompts: Sequence[PromptLike | Prepared],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
    ) -> MultiStream:
        """Stream several prompts at once: iterate for ``(index, item)`` pairs, where `index`
        is the prompt's position and `item` is each of its `Chunk`s, then its `Completion`.

        The prompts run as one native batch where the engine can stream a batch
        (`batches_streams`; engines with ``batch_params="uniform"`` get one batch per distinct
        parameters, one after another), else one after another. `MultiStream.cancel(index)`
        stops one prompt while the others go on (thread-safe: a server calls it when a client
        disconnects). Conversations go in as `prepare(messages=...)`.
        """
        return MultiStream(self, self._jobs(list(prompts), params))

    def _stream(self, job: _Job) -> Stream:
        assembler = _StreamAssembler(self, job)
        return Stream(self._stream_chunks(job, assembler), assembler)

    def _astream(self, job: _Job) -> AsyncStream:
        assembler = _StreamAssembler(self, job)
        return AsyncStream(self._astream_chunks(job, assembler), assembler)

    def _locked_events(self, request: EngineRequest) -> Iterator[TokenEvent]:
        return self._locked(lambda: self.engine.stream(request))

    def _locked(self, start: Callable[[], Iterator[_T]]) -> Iterator[_T]:
        """An engine stream under `_engine_call`, closed (engine stopped) however it ends."""
        with self._engine_call():
            events = start()
            try:
                yield from events
            finally:
                close = getattr(events, "close", None)
                if close is not None:
                    close()

    def _stream_chunks(
        self, job: _Job, assembler: _StreamAssembler
    ) -> Iterator[Chunk | Completion]:
        assembler.start = now()
        for offset, req in enumerate(job.requests):
            events = self._locked_events(req)
            try:
                for event in events:
                    yield from assembler.on_event(event, offset)
                    if assembler.replica_done(offset, req):
                        break
            finally:
                events.close()
        yield from assembler.finish()

    async def _astream_chunks(
        self, job: _Job, assembler: _StreamAssembler
    ) -> AsyncIterator[Chunk | Completion]:
        assembler.start = now()
        native = self._native_async("astream")
        for offset, req in enumerate(job.requests):
            if native:
                events = self.engine.astream(req)
            else:
                from ._threads import iterate_in_thread

                events = iterate_in_thread(lambda req=req: self._locked_events(req))
            try:
                try:
                    async for event in events:
                        for item in assembler.on_event(event, offset):
                            yield item
                        if assembler.replica_done(offset, req):
                            break
                except UnillmError:
                    raise
                except Exception as exc:
                    raise EngineError(self.engine_name, f"{type(exc).__name__}: {exc}") from exc
            finally:
                await events.aclose()  # type: ignore[attr-defined]
        for item in assembler.finish():
            yield item

    # -- lifetime --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the loaded model, as loaded (quantized, converted...), to the directory `path`,
        so that `unillm.load(engine, path)` loads it again without redoing that work.

        Raises `SaveNotSupportedError` when the engine, or its library for this model, cannot.
        """
        self._check_open()
        with self._lock:
            try:
                self.engine.save(os.fspath(path))
            except UnillmError:
                raise
            except Exception as exc:
                raise EngineError(self.engine_name, f"save failed: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Free the engine. Further calls raise `GeneratorClosedError`."""
        if not self._closed:
            self._closed = True
            self.engine.close()

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _StreamAssembler:
    """Turns engine events into `Chunk`s and, at the end, the `Completion`.

    Sample index = replica offset (emulated n) + the event's own index (native n).
    """

    def __init__(self, gen: Generator, job: _Job):
        self.gen = gen
        self.job = job
        self.decode = gen._decode()
        self.start = now()
        self.trackers: dict[int, SampleTracker] = {}
        self.times: dict[int, list[float]] = {}
        self.logprobs: dict[int, list] = {}
        self.samples: dict[int, Sample] = {}
        self.output_tokens: dict[int, int] = {}
        self.n_per_request = job.requests[0].params.n if job.requests else 1

    def _index(self, event: TokenEvent, offset: int) -> int:
        return offset * self.n_per_request + event.index

    def on_event(self, event: TokenEvent, offset: int) -> Iterator[Chunk]:
        i = self._index(event, offset)
        if i in self.samples:
            return
        tracker = self.trackers.get(i)
        if tracker is None:
            tracker = self.trackers[i] = SampleTracker(self.decode, self.job.plan.rules)
            self.times[i] = []
        t = now()
        ids = tuple(event.token_ids)
        self.times[i].extend([t] * event.token_count)  # a chunk of k: one gap, k-1 zero gaps
        if event.logprobs:
            self.logprobs.setdefault(i, []).extend(event.logprobs)
        if event.output_tokens is not None:
            self.output_tokens[i] = event.output_tokens
        text = tracker.push(ids, event.text if self.decode is None else None)
        if text or ids:
            yield Chunk(text, ids, i, logprobs=tuple(event.logprobs) if event.logprobs else None)
        if tracker.stopped or event.finish_reason is not None:
            yield self._finish(i, event.finish_reason or "length", event.stop_reason)

    def _finish(self, i: int, engine_finish: str, stop_reason: str | int | None) -> Chunk:
        tracker = self.trackers[i]
        final, rest = tracker.finish(engine_finish, stop_reason)
        kept = len(final.token_ids)
        times = self.times[i][:kept] if self.decode is not None else self.times[i]
        prompt_tokens = (
            len(self.job.prompt_ids) if self.job.prompt_ids is not None
            else self.job.requests[i // self.n_per_request].prompt_tokens
        )
        if self.decode is not None:
            output_tokens = kept
        else:  # text engines: the server's count if it sent one, else one token per event
            output_tokens = self.output_tokens.get(i) or len(self.times[i])
        timing = _make_timing(self.start, now(), times, "stream", prompt_tokens, output_tokens)
        lp = self.logprobs.get(i)
        self.samples[i] = Generator._to_sample(final, i, timing, lp)
        return Chunk(rest, (), i, final.finish_reason)  # type: ignore[arg-type]

    def replica_done(self, offset: int, req: EngineRequest) -> bool:
        first = offset * self.n_per_request
        return all(first + k in self.samples for k in range(req.params.n))

    def finish(self, aborted: bool = False) -> Iterator[Chunk | Completion]:
        """Close every sample (``length`` if the engine ended silently, ``abort`` if the caller
        stopped), then yield greedy copies and the `Completion`."""
        total = len(self.job.requests) * self.n_per_request
        for i in range(total):
            if i not in self.samples:
                if i not in self.trackers:
                    self.trackers[i] = SampleTracker(self.decode, self.job.plan.rules)
                    self.times[i] = []
                yield self._finish(i, "abort" if aborted else "length", None)
        samples = [self.samples[i] for i in range(total)]
        for k in range(1, self.job.plan.copies):
            s = replace(samples[0], index=k)
            yield Chunk(s.text, s.token_ids, k, s.finish_reason)
        yield self.gen._completion(self.job, samples)

    def aborted_completion(self) -> Completion:
        """The completion of a stream the caller closed early."""
        *_, completion = self.finish(aborted=True)
        return completion  # type: ignore[return-value]


class MultiStream:
    """`Generator.stream_many`: ``(index, Chunk)`` pairs as the engine produces them, and
    ``(index, Completion)`` once that prompt has ended (its last item). Every prompt gets its
    Completion, also when the engine fails for none of them; an engine failure raises."""

    def __init__(self, gen: Generator, jobs: list[_Job]):
        self._gen = gen
        self._jobs = jobs
        self._assemblers = [_StreamAssembler(gen, job) for job in jobs]
        self._done: set[int] = set()
        self._cancelled: set[int] = set()
        self._pending: deque[int] = deque()  # cancelled, Completion not yet handed out
        self._items = self._run()
        self.completions: list[Completion | None] = [None] * len(jobs)

    def __iter__(self) -> MultiStream:
        return self

    def __next__(self) -> tuple[int, Chunk | Completion]:
        return next(self._items)

    def cancel(self, index: int) -> None:
        """Stop prompt `index`: the engine stops its tokens, and its Completion (finish reason
        ``abort``) comes out next. Safe to call from any thread; a finished prompt is left
        alone."""
        if index in self._done or index in self._cancelled:
            return
        self._cancelled.add(index)
        for request in self._jobs[index].requests:
            request.abort()
        self._pending.append(index)

    def close(self) -> None:
        """Stop the engine for every prompt still running."""
        self._items.close()

    def __enter__(self) -> MultiStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _end(self, j: int, aborted: bool) -> Iterator[tuple[int, Chunk | Completion]]:
        self._done.add(j)
        for item in self._assemblers[j].finish(aborted=aborted):
            if isinstance(item, Completion):
                self.completions[j] = item
            yield j, item

    def _flush_cancelled(self) -> Iterator[tuple[int, Chunk | Completion]]:
        while self._pending:
            j = self._pending.popleft()
            if j not in self._done:
                yield from self._end(j, aborted=True)

    def _groups(self) -> list[list[tuple[int, int, EngineRequest]]]:
        """(prompt, replica offset, request) per engine call, as `Generator._batches` splits."""
        flat = [(j, k, r) for j, job in enumerate(self._jobs) for k, r in enumerate(job.requests)]
        if self._gen.engine.capabilities.batch_params == "per_request":
            return [flat] if flat else []
        groups: dict[SamplingParams, list[tuple[int, int, EngineRequest]]] = {}
        for item in flat:
            groups.setdefault(item[2].params, []).append(item)
        return list(groups.values())

    def _run(self) -> Iterator[tuple[int, Chunk | Completion]]:
        start = now()
        for a in self._assemblers:
            a.start = start
        for group in self._groups():
            live = [g for g in group if g[0] not in self._done]
            if not live:
                continue
            requests = [r for _, _, r in live]
            events = self._gen._locked(lambda r=requests: self._gen.engine.stream_batch(r))
            try:
                for k, event in events:
                    yield from self._flush_cancelled()
                    j, offset, req = live[k]
                    if j in self._done:
                        continue
                    a = self._assemblers[j]
                    for chunk in a.on_event(event, offset):
                        yield j, chunk
                    if a.replica_done(offset, req):
                        req.abort()  # an emulated stop fired: free the engine's row
                        job = self._jobs[j]
                        if all(a.replica_done(o, r) for o, r in enumerate(job.requests)):
                            yield from self._end(j, aborted=False)
            finally:
                events.close()
            yield from self._flush_cancelled()
        yield from self._flush_cancelled()
        for j in range(len(self._jobs)):
            if j not in self._done:
                yield from self._end(j, aborted=j in self._cancelled)


class Stream:
    """A streaming call: iterate for `Chunk`s. After the last one, `completion` holds the
    same `Completion` a non-streamed call returns (with streaming timing)."""

    def __init__(self, items: Iterator[Chunk | Completion], assembler: _StreamAssembler):
        self._items = items
        self._assembler = assembler
        self.completion: Completion | None = None

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> Chunk:
        item = next(self._items)
        if isinstance(item, Completion):
            self.completion = item
            raise StopIteration
        return item

    @property
    def text(self) -> str:
        """The first sample's full text (consumes the stream if it has not ended)."""
        for _ in self:
            pass
        assert self.completion is not None
        return self.completion.text

    def close(self) -> None:
        """Stop the engine if the stream has not ended; `completion` keeps what was made."""
        self._items.close()  # type: ignore[attr-defined]
        if self.completion is None:
            self.completion = self._assembler.aborted_completion()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStream:
    """The asyncio counterpart of `Stream` (``async for``, ``async with``, ``aclose()``)."""

    def __init__(self, items: AsyncIterator[Chunk | Completion], assembler: _StreamAssembler):
        self._items = items
        self._assembler = assembler
        self.completion: Completion | None = None

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> Chunk:
        item = await self._items.__anext__()
        if isinstance(item, Completion):
            self.completion = item
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Stop the engine if the stream has not ended; `completion` keeps what was made."""
        await self._items.aclose()  # type: ignore[attr-defined]
        if self.completion is None:
            self.completion = self._assembler.aborted_completion()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
