"""`Target`: one engine configuration the conformance kit runs against."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_PRESETS = ("llama-tiny", "gpt2-tiny", "qwen2-tiny")
"""The test models every exact configuration is run on (unillm.testing.build_test_model): three
architectures, with and without a bos token, tied and untied embeddings."""


@dataclass(frozen=True)
class Target:
    """An engine and the options it is loaded with, and what the kit may expect of it.

    - `id`: the test id (``test_x[id]``); `engine` the registered engine name (default: `id`).
    - `options`: passed to ``unillm.load(engine, model, **options)``.
    - `exact`: greedy token ids must equal the float32 reference (`reference.greedy_ids`).
      A configuration that cannot (quantized weights) says why in `inexact_reason`; the
      parity checks are then reported as skipped with that reason, every other check runs.
    - `presets`: the test models this configuration is asked to load; `preset` the one the
      single-model checks use (the `gen` fixture).
    - `server`: for an engine that talks to a server, the name of a session-scoped pytest
      fixture returning ``start(checkpoint_dir) -> (model, extra options)``: it starts (or
      reuses) a server for that checkpoint and says how to reach it.
    - `batch_variance`: why greedy output may depend on the prompts batched with it ("" means
      it must not).
    """

    id: str
    engine: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    exact: bool = True
    inexact_reason: str = ""
    presets: tuple[str, ...] = ALL_PRESETS
    server: str | None = None
    preset: str = "llama-tiny"
    batch_variance: str = ""

    def __post_init__(self) -> None:
        if not self.engine:
            object.__setattr__(self, "engine", self.id)
        if not self.exact and not self.inexact_reason:
            raise ValueError(f"target {self.id!r}: exact=False needs an inexact_reason (why "
                             "its greedy output may leave the float32 reference)")
        if self.preset not in self.presets:
            raise ValueError(f"target {self.id!r}: preset {self.preset!r} is not among its "
                             f"presets {self.presets}")

    def __str__(self) -> str:
        return self.id
