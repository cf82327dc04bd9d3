"""Prometheus metrics of one server (`GET /metrics`).

Each app gets its own registry, so several servers in one process (tests) do not share
counters. Latencies follow docs/metrics.md, measured where the server sees them: TTFT from the
request's arrival (queueing included) to the moment its first token is ready to send; ITL
between consecutive tokens a request receives (a chunk of k tokens counts as one gap and k-1
zero gaps); e2e from arrival to the last token.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Fine buckets at the low end: CPU engines on small models answer in milliseconds.
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
            2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0)
_GAPS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4,
         0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServeMetrics:
    """The metric objects, named as vLLM's server names the same figures (``unillm_`` prefix)."""

    def __init__(self, model: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.model = model
        self.requests = Counter(
            "unillm_requests", "HTTP requests by route and status code", ["route", "status"],
            registry=r)
        self.finished = Counter(
            "unillm_request_finished", "Generation requests by finish reason "
            "(abort: the client left)", ["finish_reason"], registry=r)
        self.ttft = Histogram(
            "unillm_time_to_first_token_seconds", "Arrival to first token", buckets=_LATENCY,
            registry=r)
        self.itl = Histogram(
            "unillm_inter_token_latency_seconds", "Gap between consecutive tokens",
            buckets=_GAPS, registry=r)
        self.e2e = Histogram(
            "unillm_e2e_request_latency_seconds", "Arrival to last token", buckets=_LATENCY,
            registry=r)
        self.prompt_tokens = Counter(
            "unillm_prompt_tokens", "Prompt tokens of finished requests", registry=r)
        self.generation_tokens = Counter(
            "unillm_generation_tokens", "Tokens generated (aborted requests included)",
            registry=r)
        self.in_flight = Gauge(
            "unillm_requests_in_flight", "Generation requests admitted and not yet answered",
            registry=r)
        self.queue_depth = Gauge(
            "unillm_queue_depth", "Requests waiting for the engine", registry=r)
        self.rejected = Counter(
            "unillm_requests_rejected", "Requests refused with 429 (queue full)", registry=r)
        self.batch_size = Histogram(
            "unillm_batch_size", "Requests per engine batch (micro-batching)",
            buckets=_BATCH, registry=r)
        self.batches_running = Gauge(
            "unillm_batches_running", "Engine batches running now", registry=r)
        self.running_batch = Gauge(
            "unillm_running_batch_requests", "Requests in the engine's running batch "
            "(continuous batching), generating or waiting for a slot", registry=r)
        self.static_path = Counter(
            "unillm_static_path_requests", "Requests the engine's running batch could not "
            "take, run in static batches instead, by the parameter that sent them there",
            ["reason"], registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestClock:
    """One request's TTFT / ITL / e2e, fed as its tokens become ready."""

    def __init__(self, metrics: ServeMetrics, arrival: float) -> None:
        self.metrics = metrics
        self.arrival = arrival
        self.last: float | None = None

    def tokens(self, count: int, at: float) -> None:
        if count <= 0:
            return
        m = self.metrics
        if self.last is None:
            m.ttft.observe(at - self.arrival)
        else:
            m.itl.observe(at - self.last)
        for _ in range(count - 1):
            m.itl.observe(0.0)
        self.last = at

    def done(self, at: float) -> None:
        if self.last is not None:
            self.metrics.e2e.observe(self.last - self.arrival)
        else:
            self.metrics.e2e.observe(at - self.arrival)
