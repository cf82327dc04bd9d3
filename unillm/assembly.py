"""From what the engine returned to what the caller gets: `Sample`, `Completion`, `Completions`.

Written once for batch and stream alike. A batch call hands over each `EngineSequence` whole;
a stream accumulates the same record from its events (`SampleRecord`). Either way the final
text, ids and finish reason come from `decoding` (`finalize`, or a `SampleTracker`, which
agrees with it), and everything else from `build_sample` below, so a streamed result and a
batch result of the same generation report the same figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .decoding import Final, finalize
from .engine import EngineRequest, EngineResult, EngineSequence, TokenEvent
from .errors import BatchError, EngineError, UnillmError
from .params import SamplingParams
from .prepared import Prepared
from .results import Completion, Completions, Sample, TokenLogprob
from .timing import RunTiming, Timing, TimingSource

Decode = Callable[[Sequence[int]], str]


def sample_timing(
    start: float, end: float, times: Sequence[float] | None, source: TimingSource,
    prompt_tokens: int | None, output_tokens: int, ttft: float | None = None,
) -> Timing:
    """`Timing` of one sample from its token times (unillm's clock) or, without them, from the
    call's end and the engine's own ttft, if it measured one."""
    if times:
        rel = tuple(t - start for t in times)
        e2e = rel[-1] if source in ("stream", "callback") else end - start
        return Timing(e2e, rel, prompt_tokens, output_tokens, source)
    return Timing(end - start, None, prompt_tokens, output_tokens,
                  "engine" if ttft is not None else "end", ttft_override=ttft)


def output_token_count(token_ids_engine: bool, kept: int, seq: EngineSequence) -> int:
    """How many tokens a sample generated: the ids kept (token-id engines); for text engines
    the engine's own count (a server's usage), else one per timed piece of text, else 0."""
    if token_ids_engine:
        return kept
    if seq.output_tokens is not None:
        return seq.output_tokens
    return len(seq.token_times or ())


def build_sample(
    prepared: Prepared, index: int, final: Final, seq: EngineSequence, result: EngineResult,
    *, start: float, end: float, source: TimingSource, token_ids_engine: bool,
) -> Sample:
    """One `Sample`: the final text/ids/finish reason, and its timing, token count and
    logprobs cut to the tokens kept."""
    kept = len(final.token_ids)
    times = seq.token_times
    if token_ids_engine and times:
        times = times[:kept]
    prompt_tokens = (len(prepared.prompt_ids) if prepared.prompt_ids is not None
                     else result.prompt_tokens)
    timing = sample_timing(start, end, times, source, prompt_tokens,
                           output_token_count(token_ids_engine, kept, seq),
                           ttft=result.ttft if source == "callback" else None)
    compile_s = prepared.compile_s if prepared.compile_s is not None else result.compile_s
    if compile_s is not None or seq.mask_s is not None:
        timing = replace(timing, grammar_compile_s=compile_s, grammar_mask_s=seq.mask_s)
    logprobs = tuple(seq.logprobs[:kept]) if seq.logprobs is not None else None
    complete = None
    if prepared.params.structured is not None:
        from .grammars import text_complete

        complete = text_complete(prepared.params.structured, final.text)
    sample = Sample(index, final.text, final.token_ids, final.finish_reason,  # type: ignore[arg-type]
                    timing, final.stop_reason, logprobs, complete)
    if prepared.tools is not None:  # tool calls read from the text, or the server's
        sample = prepared.tools.finish_sample(sample, seq.tool_calls)
    return sample


def copy_sample(prepared: Prepared, sample: Sample, index: int) -> Sample:
    """Greedy `n`: sample 0 again as sample `index`."""
    if prepared.tools is not None:
        return prepared.tools.copy_sample(sample, index)
    return replace(sample, index=index)


def build_completion(engine_name: str, prepared: Prepared, samples: list[Sample],
                     results: Sequence[EngineResult]) -> Completion:
    """The prompt's `Completion`: its samples (greedy copies added) and what the engine
    received (the first request's record; with emulated n, also how many requests ran)."""
    samples = list(samples)
    for i in range(1, prepared.plan.copies):
        samples.append(copy_sample(prepared, samples[0], i))
    received: Mapping[str, Any] = results[0].received if results else {}
    if len(prepared.requests) > 1:
        received = {**received, "requests": len(prepared.requests)}
    return Completion(
        samples=tuple(samples), engine=engine_name, params=prepared.params,
        engine_params=received, prompt=prepared.prompt,
        prompt_token_ids=tuple(prepared.prompt_ids) if prepared.prompt_ids is not None else None,
        emulated=prepared.plan.emulated,
        tool_format=prepared.tools.format_name if prepared.tools is not None else None,
        prompt_logprobs=_prompt_logprobs(engine_name, prepared, results),
    )


def _prompt_logprobs(engine_name: str, prepared: Prepared,
                     results: Sequence[EngineResult]) -> tuple[TokenLogprob | None, ...] | None:
    """The prompt's logprobs when asked for: unillm's (emulated) or the engine's own; an
    engine that declared them natively and returned none is an error, not a silent None."""
    if prepared.params.prompt_logprobs is None:
        return None
    found = prepared.prompt_logprobs
    if found is None:
        found = next((r.prompt_logprobs for r in results if r.prompt_logprobs is not None), None)
    if found is None:
        ran = any(r.samples or r.received for r in results)  # not a stream closed at once
        if ran and "prompt_logprobs" not in prepared.plan.emulated:
            raise EngineError(engine_name, "prompt_logprobs were asked for and the engine, "
                              "which declares them, returned none")
        return None
    return tuple(found)


def batch_samples(prepared: Prepared, results: Sequence[EngineResult], decode: Decode | None,
                  *, start: float, end: float, token_ids_engine: bool) -> list[Sample]:
    """Every sample of one prompt from a batch call, numbered across its requests."""
    samples: list[Sample] = []
    for result in results:
        for seq in result.samples:
            final = finalize(seq.token_ids, decode, prepared.plan.rules,
                             engine_finish=seq.finish_reason, engine_stop_reason=seq.stop_reason,
                             engine_text=seq.text)
            samples.append(build_sample(prepared, len(samples), final, seq, result, start=start,
                                        end=end, source="callback",
                                        token_ids_engine=token_ids_engine))
    return samples


def run_timing(completions: Sequence[Completion], wall: float) -> RunTiming:
    prompt_tokens = [c.samples[0].timing.prompt_tokens for c in completions if c.samples]
    return RunTiming(
        wall=wall, requests=len(completions),
        prompt_tokens=None if any(p is None for p in prompt_tokens) else sum(prompt_tokens),  # type: ignore[arg-type]
        output_tokens=sum(s.timing.output_tokens for c in completions for s in c.samples),
    )


@dataclass
class BatchOutcome:
    """What the engine calls of one `generate` returned, request by request, and why the
    requests that failed did (see `PartialBatchFailure`)."""

    engine_name: str
    done: dict[EngineRequest, EngineResult] = field(default_factory=dict)
    failed: dict[EngineRequest, UnillmError] = field(default_factory=dict)

    def store(self, batch: Sequence[EngineRequest], results: Sequence[Any]) -> None:
        self._check_count(batch, results)
        for request, result in zip(batch, results):
            self.done[request] = self._checked(result)

    def store_partial(self, batch: Sequence[EngineRequest], results: Sequence[Any],
                      errors: Mapping[int, BaseException]) -> None:
        """Keep what an engine completed of a batch, and why the rest failed."""
        from .errors import as_engine_error

        self._check_count(batch, results)
        for i, (request, result) in enumerate(zip(batch, results)):
            if result is not None and i not in errors:
                self.done[request] = self._checked(result)
            else:
                self.failed[request] = as_engine_error(
                    self.engine_name, errors.get(i) or EngineError(self.engine_name, "no result"))

    def _check_count(self, batch: Sequence[EngineRequest], results: Sequence[Any]) -> None:
        if len(results) != len(batch):
            raise EngineError(self.engine_name,
                              f"returned {len(results)} results for {len(batch)} requests")

    def _checked(self, result: Any) -> EngineResult:
        if not isinstance(result, EngineResult):
            raise EngineError(self.engine_name, "generate() must return one EngineResult per "
                              f"request, got {type(result).__name__}")
        return result

    def completions(self, prepared: Sequence[Prepared],
                    decoder: Callable[[SamplingParams], Decode | None], *, start: float,
                    end: float, token_ids_engine: bool) -> Completions:
        """The call's `Completions`, or `BatchError` if some prompts failed: a prompt fails
        when any of its engine requests did."""
        out: list[Completion] = []
        partial: list[Completion | None] = []
        errors: dict[int, UnillmError] = {}
        for index, job in enumerate(prepared):
            error = next((self.failed[r] for r in job.requests if r in self.failed), None)
            if error is not None:
                errors[index] = error
                partial.append(None)
                continue
            results = [self.done[r] for r in job.requests]
            samples = batch_samples(job, results, decoder(job.params), start=start, end=end,
                                    token_ids_engine=token_ids_engine)
            out.append(build_completion(self.engine_name, job, samples, results))
            partial.append(out[-1])
        if errors:
            raise BatchError(self.engine_name, errors, partial)
        return Completions(out, run_timing(out, end - start))


@dataclass
class SampleRecord:
    """One streamed sample as its events arrive: the same record a batch call returns whole."""

    seq: EngineSequence = field(default_factory=lambda: EngineSequence([], "length",
                                                                       token_times=[]))
    tool_calls: Any = None  # a ToolCallAccumulator, once a server sends call pieces

    def add(self, event: TokenEvent, at: float) -> None:
        seq = self.seq
        seq.token_ids.extend(event.token_ids)
        seq.token_times.extend([at] * event.token_count)  # type: ignore[union-attr]
        # a chunk of k tokens: one gap, then k-1 zero gaps (METRICS.md)
        if event.logprobs:
            if seq.logprobs is None:
                seq.logprobs = []
            seq.logprobs.extend(event.logprobs)
        if event.output_tokens is not None:
            seq.output_tokens = event.output_tokens
        if event.tool_calls:  # a server's call pieces, whole calls at the end
            if self.tool_calls is None:
                from .tools.accumulate import ToolCallAccumulator

                self.tool_calls = ToolCallAccumulator()
            self.tool_calls.feed([d.to_openai() for d in event.tool_calls])
            seq.tool_calls = self.tool_calls.calls()


def logprobs_of(event: TokenEvent) -> tuple[TokenLogprob, ...] | None:
    return tuple(event.logprobs) if event.logprobs else None
