"""The server's limits and knobs, in one place, with defaults that are safe to expose."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scheduling = Literal["auto", "batch", "direct", "continuous"]


@dataclass(frozen=True)
class ServeConfig:
    """What `create_app` needs besides the generator.

    Scheduling: ``direct`` hands each request straight to the engine (engines that schedule
    concurrent requests themselves: vLLM's async engine, HTTP engines); ``continuous`` adds
    each request to the engine's running batch (`Engine.running_batch`: transformers,
    llama.cpp; see serve/running.py); ``batch`` gathers requests into native batches
    (micro-batching, see `scheduler.MicroBatcher` for how long it waits); ``auto`` picks
    ``direct`` for engines that declare `concurrent` and have a native `astream`, else
    ``continuous`` where the engine has a running batch, else ``batch``.
    """

    served_model_name: str
    api_key: str | None = None
    scheduling: Scheduling = "auto"
    max_batch_size: int = 64
    batch_wait: float = 0.005  # seconds without a new arrival that end a gathering batch
    # (at least; longer while batches take long, see MicroBatcher)
    max_batch_wait: float = 0.5  # the longest a request ever waits for others to join it
    max_queue: int = 512  # requests waiting for the engine; past it, 429
    max_concurrency: int = 256  # direct scheduling: requests the engine gets at once
    max_tokens_cap: int = 4096  # the largest max_tokens a request may ask for
    max_body_bytes: int = 2 * 1024 * 1024
    max_prompts_per_request: int = 64  # a completions request's list of prompts
    completion_max_tokens: int = 16  # /v1/completions without max_tokens (OpenAI's, vLLM's)
    chat_template: str | None = None  # a Jinja template overriding the model's (token-id engines)

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_queue", "max_concurrency", "max_tokens_cap",
                     "max_body_bytes", "max_prompts_per_request", "completion_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServeConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_wait < 0 or self.max_batch_wait < self.batch_wait:
            raise ValueError("ServeConfig needs 0 <= batch_wait <= max_batch_wait")
        if self.scheduling not in ("auto", "batch", "direct", "continuous"):
            raise ValueError(f"ServeConfig.scheduling must be auto, batch, direct or continuous, "
                             f"got {self.scheduling!r}")
