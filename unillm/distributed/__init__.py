"""Data parallelism on Ray: `unillm.load(engine, model, replicas=N)`.

N Ray actors each hold one real engine; the `Generator` the caller gets is the ordinary one,
over a `ReplicatedEngine` that spreads requests across the actors by least outstanding work.
Model parallelism (a model larger than one device) is not done here: it is the engine's own
(vLLM's `tensor_parallel_size` / `pipeline_parallel_size`), passed through as engine options.
See docs/scaling.md.

Importing this package imports no Ray; loading replicas does.
"""

from __future__ import annotations

from typing import Any

from ..errors import EngineUnavailableError
from ..generator import Generator
from .settings import ReplicaSettings

__all__ = ["ReplicaSettings", "load_replicated"]


def _validate_here(engine: str, options: dict[str, Any]) -> None:
    """Reject an unknown engine or a bad option before starting any actor, when this process
    has the engine's plugin (a driver without the engine's packages leaves it to replicas)."""
    from ..building import parse_options
    from ..registry import registry

    try:
        info = registry().get(engine)
    except EngineUnavailableError:
        return
    parse_options(info.name, info.engine_class.Options, {**info.defaults, **options})  # type: ignore[union-attr]


def load_replicated(engine: str, model: str, *, replicas: int, options: dict[str, Any],
                    **settings: Any) -> Generator:
    """What `unillm.load(..., replicas=N, ...)` does: validate, start the replicas, and wrap
    them in a `Generator`."""
    parsed = ReplicaSettings.parse(replicas=replicas, **settings)
    _validate_here(engine, options)
    from .engine import ReplicatedEngine

    replicated = ReplicatedEngine(engine, model, options, parsed)
    return Generator(replicated, engine_name=replicated.name, model=model)
