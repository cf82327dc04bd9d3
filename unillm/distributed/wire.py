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
from dataclasses import dataclass, field, replace
from typing import Any

from ..decoding import SampleTracker, StopRules
from ..engine import Capabilities, EngineOptions, EngineRequest, EngineSequence, TokenEvent
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

    def to_request(self, decode) -> EngineRequest:
        request = EngineRequest(
            params=self.params, prompt=self.prompt, prompt_token_ids=self.prompt_token_ids,
            messages=self.messages,
        )
        if self.rules is not None:
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


@dataclass
class WireResult:
    """One request's outcome, with token times as offsets from the replica's end of call."""

    samples: list[EngineSequence]
    received: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, request: EngineRequest, samples: list[EngineSequence], end: float) -> WireResult:
        moved = [
            replace(s, token_times=[t - end for t in s.token_times]) if s.token_times else s
            for s in samples
        ]
        return cls(moved, dict(request.received), request.prompt_tokens, dict(request.metrics))

    def settle(self, request: EngineRequest, received_at: float, busy: float, call_start: float,
               replica: int) -> list[EngineSequence]:
        """Copy what the engine reported onto the driver's request; samples on the driver's
        clock. `received_at`: driver time the answer arrived; `busy`: the replica's time in
        the call; `call_start`: driver time the call was made."""
        request.received = {**self.received, "replica": replica}
        request.prompt_tokens = self.prompt_tokens
        metrics = dict(self.metrics)
        if metrics.get("ttft") is not None:
            # An engine's own ttft counts from when the replica got the call: add the dispatch.
            metrics["ttft"] = metrics["ttft"] + (received_at - busy - call_start)
        request.metrics = metrics
        return [
            replace(s, token_times=[received_at + off for off in s.token_times])
            if s.token_times else s
            for s in self.samples
        ]


@dataclass
class Reply:
    """A replica's answer to one batch: a result per request, and how long it was busy."""

    results: list[WireResult]
    busy: float


@dataclass
class StreamBatch:
    """Every stream event a replica had ready when the driver asked (at least one, unless the
    stream is done), as ``(request index, event)``, plus what the engine reported so far for
    each request."""

    events: list[tuple[int, TokenEvent]]
    done: bool = False
    error: BaseException | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: list[int | None] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)

    def apply(self, requests: list[EngineRequest], replica: int) -> None:
        for request, received, prompt_tokens, metrics in zip(
                requests, self.received, self.prompt_tokens, self.metrics):
            request.received = {**received, "replica": replica}
            request.prompt_tokens = prompt_tokens
            request.metrics = dict(metrics)


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
