"""`unillm.load`: engine name + model + options -> a ready `Generator`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .building import build_engine
from .errors import InvalidParameterError
from .generator import Generator

def load(
    engine: str,
    model: str | os.PathLike[str] | None = None,
    *,
    replicas: int | None = None,
    ray_address: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    retry: bool | None = None,
    max_restarts: int | None = None,
    ray_actor_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> Generator:
    """Load `model` with `engine` and return a `Generator`.

    `engine` is a registered engine name (`unillm engines` lists them); `model` is whatever the
    engine loads (a local directory, a hub id, a .gguf file, a model name on a server);
    `options` are the engine's own (`dtype`, `device`, `compute_type`, `base_url`, ...),
    validated by the engine's options schema, plus `tool_parser`: the model's tool-call
    format where it cannot be told from the model (docs/tools.md). An engine that is not installed raises
    `EngineUnavailableError` with the command that installs it. HTTP engines may leave `model`
    out: the server's own model is used.

    `replicas=N` runs N copies of the engine as Ray actors behind the same `Generator`
    (data parallelism, docs/scaling.md); `ray_address`, `num_cpus`, `num_gpus` (per replica),
    `retry`, `max_restarts` and `ray_actor_options` configure them and are only accepted with
    `replicas`.

    `engine="auto"` loads the fastest engine and settings, measured on this machine and model,
    whose quality stays within `max_gap` of float32 (``objective="latency"`` or
    ``"throughput"``; docs/recommend.md): it measures on first use and caches the answer.
    """
    if engine == "auto":
        # The recommendation is a tool above the core (it runs the bench): reached by name,
        # as engines are, so that nothing in the core imports it.
        import importlib

        return importlib.import_module("unillm.recommend").load_auto(model, **options)
    tool_parser = options.pop("tool_parser", None)
    if tool_parser is not None:
        from .tools.formats import check_parser_name

        tool_parser = check_parser_name(tool_parser)
    replica_args = {
        "ray_address": ray_address, "num_cpus": num_cpus, "num_gpus": num_gpus, "retry": retry,
        "max_restarts": max_restarts, "ray_actor_options": ray_actor_options,
    }
    given = {k: v for k, v in replica_args.items() if v is not None}
    if replicas is not None:
        from .distributed import load_replicated

        if model is None:
            raise InvalidParameterError("model", None, "a model path or id: each replica loads it",
                                        owner="unillm.load")

        gen = load_replicated(engine, os.fspath(model), replicas=replicas, options=options,
                              **given)
        gen.tool_parser = tool_parser
        return gen
    if given:
        field = next(iter(given))
        raise InvalidParameterError(field, given[field], "only used with replicas=N (Ray replicas)",
                                    owner="unillm.load")
    instance, info = build_engine(engine, model, **options)
    return Generator(instance, engine_name=info.name, model=instance.model or os.fspath(model or ""),
                     tool_parser=tool_parser)
