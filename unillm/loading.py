"""`unillm.load`: engine name + model + options -> a ready `Generator`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .engine import Engine
from .errors import EngineError, InvalidParameterError, UnillmError, UnknownParameterError
from .generator import Generator
from .model_source import check_local_model
from .registry import EngineInfo, registry

_Model = TypeVar("_Model", bound=BaseModel)


def parse_options(engine: str, schema: type[_Model], options: Mapping[str, Any], *,
                  owner: str | None = None) -> _Model:
    """Validate engine options (or another options schema, named by `owner`); an unknown or
    bad option names itself and what is allowed."""
    owner = owner or f"{engine} engine option"
    try:
        return schema(**options)
    except ValidationError as exc:
        first = exc.errors()[0]
        own = (first.get("ctx") or {}).get("error")
        if isinstance(own, UnillmError):  # an option's own validator already named the problem
            raise own from None
        field = str(first["loc"][0]) if first["loc"] else ""
        if first["type"] == "extra_forbidden":
            raise UnknownParameterError(field, schema.model_fields, owner=owner) from None
        info = schema.model_fields.get(field)
        allowed = first.get("msg", "")
        if info is not None and info.description:
            allowed = f"{allowed} ({info.description})"
        raise InvalidParameterError(field, first.get("input"), allowed, owner=owner) from None


def build_engine(
    engine: str, model: str | os.PathLike[str] | None, **options: Any
) -> tuple[Engine, EngineInfo]:
    """The engine instance itself, without a `Generator` around it.

    The one place an engine is constructed: `load` uses it in this process, and each Ray
    replica (unillm.distributed) uses it inside its own process, so both validate and load the
    same way. `model` None is for server engines (HTTP): the server's own model is used.
    """
    info = registry().get(engine)
    engine_cls: type[Engine] = info.engine_class  # type: ignore[assignment]
    if model is None:
        if engine_cls.local:
            raise InvalidParameterError(
                "model", None, f"a model path or id: engine {info.name!r} runs a local model",
                owner="unillm.load",
            )
        model = ""  # a server engine asks its server which model it serves
    elif engine_cls.local:
        check_local_model(os.fspath(model))
    merged = {**info.defaults, **options}
    parsed = parse_options(info.name, engine_cls.Options, merged)
    try:
        instance = engine_cls(os.fspath(model), parsed)
    except UnillmError:
        raise
    except Exception as exc:
        raise EngineError(info.name, f"could not load {os.fspath(model)!r}: "
                          f"{type(exc).__name__}: {exc}") from exc
    instance.name = info.name
    return instance, info


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
    validated by the engine's options schema. An engine that is not installed raises
    `EngineUnavailableError` with the command that installs it. HTTP engines may leave `model`
    out: the server's own model is used.

    `replicas=N` runs N copies of the engine as Ray actors behind the same `Generator`
    (data parallelism, docs/scaling.md); `ray_address`, `num_cpus`, `num_gpus` (per replica),
    `retry`, `max_restarts` and `ray_actor_options` configure them and are only accepted with
    `replicas`.
    """
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

        return load_replicated(engine, os.fspath(model), replicas=replicas, options=options, **given)
    if given:
        field = next(iter(given))
        raise InvalidParameterError(field, given[field], "only used with replicas=N (Ray replicas)",
                                    owner="unillm.load")
    instance, info = build_engine(engine, model, **options)
    return Generator(instance, engine_name=info.name, model=instance.model or os.fspath(model or ""))
