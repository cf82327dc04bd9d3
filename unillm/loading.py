"""`unillm.load`: engine name + model + options -> a ready `Generator`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .engine import Engine, EngineOptions
from .errors import EngineError, InvalidParameterError, UnillmError, UnknownParameterError
from .generator import Generator
from .registry import registry


def parse_options(engine: str, schema: type[EngineOptions], options: Mapping[str, Any]) -> EngineOptions:
    """Validate engine options; an unknown or bad option names itself and what is allowed."""
    owner = f"{engine} engine option"
    try:
        return schema(**options)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        if first["type"] == "extra_forbidden":
            raise UnknownParameterError(field, schema.model_fields, owner=owner) from None
        info = schema.model_fields.get(field)
        allowed = first.get("msg", "")
        if info is not None and info.description:
            allowed = f"{allowed} ({info.description})"
        raise InvalidParameterError(field, first.get("input"), allowed, owner=owner) from None


def load(engine: str, model: str | os.PathLike[str] | None = None, **options: Any) -> Generator:
    """Load `model` with `engine` and return a `Generator`.

    `engine` is a registered engine name (`unillm engines` lists them); `model` is whatever the
    engine loads (a local directory, a hub id, a .gguf file, a model name on a server);
    `options` are the engine's own (`dtype`, `device`, `compute_type`, `base_url`, ...),
    validated by the engine's options schema. An engine that is not installed raises
    `EngineUnavailableError` with the command that installs it. HTTP engines may leave `model`
    out: the server's own model is used.
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
    return Generator(instance, engine_name=info.name, model=instance.model or os.fspath(model))
