"""What travels between the driver and a replica, and how per-token times cross processes.

A replica runs in another process, perhaps on another machine, so its `perf_counter` stamps
mean nothing to the driver's clock. A replica therefore sends each token's time as an offset
from the moment it finished the call (`t - end`, never positive), and the driver places them on
its own clock by pinning that end to the moment it received the answer. Everything before the
replica's end (dispatch, queueing behind other calls on the replica, prefill, each token) is
then measured on one clock, the driver's; only the return transit (a few kilobytes of token
ids) shifts every token slightly later, which is when the caller could have had them anyway.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from typing import Any

from ..decoding import SampleTracker, StopRules
from ..engine import Capabilities, EngineOptions, EngineRequest, EngineResult, TokenEvent
from ..params import SamplingParams


@dataclass
class WireRequest:
    """An `EngineRequest` without the driver-only parts: stop trackers travel as their rules,
    and the replica rebuilds them with its own tokenizer (for engines with `stop_hook`)."""

    params: SamplingParams
    prompt: str | None = None
    prompt_token_ids: list[int] | None = None
    messages: list[dict[str, Any]] | None = None
    rules: StopRules | None = None

    @classmethod
    def of(cls, request: EngineRequest) -> WireRequest:
        rules = request.trackers[0].rules if request.trackers else None
        return cls(request.params, request.prompt, request.prompt_token_ids, request.messages, rules)

    def to_request(self, decoder) -> EngineRequest:
        """`decoder(params)`: the decode for these params' samples (None for text engines)."""
        request = EngineRequest(
            params=self.params, prompt=self.prompt, prompt_token_ids=self.prompt_token_ids,
            messages=self.messages,
        )
        if self.rules is not None:
            decode = decoder(self.params)
            request.trackers = [SampleTracker(decode, self.rules) for _ in range(self.params.n)]
        return request

    @property
    def cost(self) -> int:
        """The work this request puts on a replica, for load balancing: prompt tokens plus the
        most tokens it may generate (text prompts: ~4 characters a token)."""
        if self.prompt_token_ids is not None:
            prompt = len(self.prompt_token_ids)
        elif self.prompt is not None:
            prompt = len(self.prompt) // 4 + 1
        else:
            prompt = sum(len(str(m.get("content", ""))) for m in self.messages or ()) // 4 + 1
        return prompt + self.params.max_tokens * self.params.n


def to_offsets(result: EngineResult, end: float) -> EngineResult:
    """The replica's side: token times as offsets from the end of its call (never positive)."""
    return replace(result, samples=[
        replace(s, token_times=[t - end for t in s.token_times]) if s.token_times else s
        for s in result.samples
    ])


def settle(result: EngineResult, received_at: float, busy: float, call_start: float,
           replica: int) -> EngineResult:
    """The driver's side: the result on the driver's clock, naming the replica that ran it.
    `received_at`: driver time the answer arrived; `busy`: the replica's time in the call;
    `call_start`: driver time the call was made."""
    ttft = result.ttft
    if ttft is not None:
        # An engine's own ttft counts from when the replica got the call: add the dispatch.
        ttft = ttft + (received_at - busy - call_start)
    return replace(
        result, received={**result.received, "replica": replica}, ttft=ttft,
        samples=[replace(s, token_times=[received_at + off for off in s.token_times])
                 if s.token_times else s for s in result.samples],
    )


def from_replica(event: TokenEvent, replica: int) -> TokenEvent:
    """A streamed event as the driver hands it on: a result names the replica that ran it."""
    if event.result is None:
        return event
    return replace(event, result=replace(
        event.result, received={**event.result.received, "replica": replica}))


@dataclass
class Reply:
    """A replica's answer to one batch: a result per request (token times as offsets, see
    `to_offsets`), and how long it was busy."""

    results: list[EngineResult]
    busy: float


@dataclass
class StreamBatch:
    """Every stream event a replica had ready when the driver asked (at least one, unless the
    stream is done), as ``(request index, event)``; results travel on the events."""

    events: list[tuple[int, TokenEvent]]
    done: bool = False
    error: BaseException | None = None


@dataclass
class Description:
    """What the driver needs to know of a replica's engine (the same for every replica)."""

    engine: str
    capabilities: Capabilities
    context_length: int | None
    options: EngineOptions
    tokenizer: bytes | None  # the pickled tokenizer, when it can travel (see engine.py)
    has_tokenizer: bool
    local: bool
    node: str
    pid: int


def portable_error(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling (so the driver gets the real type), else a RuntimeError
    with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure
        return RuntimeError(f"{type(exc).__name__}: {exc}")
