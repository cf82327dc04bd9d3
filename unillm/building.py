"""Building an engine: its options validated, its class found in the registry, its model
loaded. The one place an engine is constructed: `unillm.load` uses it in this process, and
each Ray replica (unillm.distributed) inside its own, so both validate and load the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .engine import Capabilities, Engine
from .errors import EngineError, InvalidParameterError, UnillmError, from_validation_error
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
        raise from_validation_error(exc, schema.model_fields, owner=owner) from None


def build_engine(
    engine: str, model: str | os.PathLike[str] | None, **options: Any
) -> tuple[Engine, EngineInfo]:
    """The engine instance itself, without a `Generator` around it.

    `model` None is for server engines (HTTP): the server's own model is used. The engine's
    `name` is the registry's (aliases resolved), set before its `__init__` runs so that errors
    raised while loading already name it.
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
        check_local_model(os.fspath(model))  # a missing path says so, before any engine work
    parsed = parse_options(info.name, engine_cls.Options, {**info.defaults, **options})
    # The registry's defaults (an alias's `defaults=`) are defaults, not the caller's choice:
    # `model_fields_set` keeps only the options the caller gave.
    object.__setattr__(parsed, "__pydantic_fields_set__",
                       set(options) & set(engine_cls.Options.model_fields))
    instance = engine_cls.__new__(engine_cls)
    instance.name = info.name
    try:
        instance.__init__(os.fspath(model), parsed)  # type: ignore[misc]
    except UnillmError:
        raise
    except Exception as exc:
        raise EngineError(info.name, f"could not load {os.fspath(model)!r}: "
                          f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(getattr(instance, "capabilities", None), Capabilities):
        instance.close()
        raise EngineError(info.name, f"plugin {info.plugin!r} loaded an engine without valid "
                          "capabilities (a unillm.Capabilities, on the class or set in __init__)")
    return instance, info
