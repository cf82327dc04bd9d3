"""Which engines exist: unillm's own and third-party plugins, found through entry points.

Every plugin (built-in ones included) is a module named by an entry point in the ``unillm``
group. Each is imported and asked to register in isolation: a plugin that fails to import or
raises while registering is listed as broken, with its error, and the others work. Nothing is
discovered until an engine is first asked for, so ``import unillm`` stays cheap.
"""

from __future__ import annotations

import importlib.util
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal

import pluggy

from . import hookspecs
from .engine import Capabilities, Engine, EngineOptions
from .errors import EngineNotFoundError, EngineUnavailableError

ENTRY_POINT_GROUP = "unillm"

EngineStatus = Literal["installed", "missing", "broken"]

KNOWN_EXTERNAL = {
    "llamacpp": (
        "unillm-llamacpp",
        'pip install ./plugins/unillm-llamacpp  (from a unillm checkout; needs a C++ '
        'compiler: CMAKE_ARGS="-DGGML_NATIVE=OFF")',
    ),
}
"""Engines that ship as separate plugin packages: name -> (distribution, install command)."""


@dataclass(frozen=True)
class EngineInfo:
    """One engine as the registry knows it.

    `status` is ``installed`` (its packages are importable), ``missing`` (a package it needs is
    not installed: `install_hint` says how to get it) or ``broken`` (its plugin failed: `error`).
    """

    name: str
    status: EngineStatus
    plugin: str
    description: str = ""
    requires: tuple[str, ...] = ()
    install_hint: str | None = None
    error: str | None = None
    aliases: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    engine_class: type[Engine] | None = field(default=None, repr=False, compare=False)


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _short_error(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def check_engine_class(name: str, engine: Any) -> None:
    """What can be checked of an engine before it loads: an `Engine` subclass with an options
    schema and, where it declares them on the class, valid `Capabilities` (engines whose
    capabilities depend on their options, like a server's profile, set them in `__init__`,
    where `building.build_engine` checks them)."""
    if not (isinstance(engine, type) and issubclass(engine, Engine)):
        raise TypeError(f"register({name!r}, ...) needs an Engine subclass, got {engine!r}")
    if not (isinstance(engine.Options, type) and issubclass(engine.Options, EngineOptions)):
        raise TypeError(f"engine {name!r}: Options must subclass unillm.EngineOptions, "
                        f"got {engine.Options!r}")
    caps = engine.__dict__.get("capabilities", getattr(engine, "capabilities", None))
    if caps is not None and not isinstance(caps, Capabilities):
        raise TypeError(f"engine {name!r}: capabilities must be a unillm.Capabilities, "
                        f"got {type(caps).__name__}")


class Registry:
    """The plugin manager and the engines its plugins registered."""

    def __init__(self, *, use_entry_points: bool = True) -> None:
        self.use_entry_points = use_entry_points
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self._engines: dict[str, EngineInfo] = {}
        self._aliases: dict[str, str] = {}
        self._broken: dict[str, EngineInfo] = {}
        self._called: set[str] = set()
        self._loaded = False
        self._lock = threading.RLock()

    # -- discovery -------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            if self.use_entry_points:
                for ep in entry_points(group=ENTRY_POINT_GROUP):
                    if self.pm.has_plugin(ep.name) or ep.name in self._broken:
                        continue  # the same plugin seen twice on sys.path
                    try:
                        plugin = ep.load()
                        self.pm.register(plugin, name=ep.name)
                    except Exception as exc:  # noqa: BLE001 - any failure isolates the plugin
                        self._mark_broken(ep.name, exc)
            self._call_hooks()

    def _call_hooks(self) -> None:
        for impl in self.pm.hook.unillm_register_engines.get_hookimpls():
            if impl.plugin_name in self._called:
                continue
            self._called.add(impl.plugin_name)
            try:
                impl.function(register=self._registrar(impl.plugin_name))
            except Exception as exc:  # noqa: BLE001
                self._mark_broken(impl.plugin_name, exc)

    def _mark_broken(self, plugin: str, exc: BaseException) -> None:
        self._broken[plugin] = EngineInfo(
            name=plugin, status="broken", plugin=plugin, error=_short_error(exc)
        )

    def _registrar(self, plugin: str):
        def register(
            name: str,
            engine: type[Engine],
            *,
            requires: tuple[str, ...] | list[str] = (),
            extra: str | None = None,
            install: str | None = None,
            description: str = "",
            aliases: tuple[str, ...] | list[str] = (),
            defaults: Mapping[str, Any] | None = None,
        ) -> None:
            check_engine_class(name, engine)
            name = name.lower()
            if name in self._engines:
                raise ValueError(
                    f"engine {name!r} is already registered by plugin "
                    f"{self._engines[name].plugin!r}"
                )
            hint = install or (f'pip install "unillm[{extra}]"' if extra else None)
            info = EngineInfo(
                name=name, status="installed", plugin=plugin, description=description,
                requires=tuple(requires), install_hint=hint, aliases=tuple(aliases),
                defaults=dict(defaults or {}), engine_class=engine,
            )
            self._engines[name] = info
            for alias in aliases:
                self._aliases[alias.lower()] = name

        return register

    def add_plugin(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object or module at run time (tests, notebooks, private engines)."""
        with self._lock:
            self._ensure_loaded()
            self.pm.register(plugin, name=name)
            self._call_hooks()

    # -- queries ---------------------------------------------------------------------------
    def _with_status(self, info: EngineInfo) -> EngineInfo:
        missing = [m for m in info.requires if not _module_available(m)]
        if not missing:
            return info
        return EngineInfo(
            **{**info.__dict__, "status": "missing",
               "error": f"not installed: {', '.join(missing)}"}
        )

    def engines(self) -> list[EngineInfo]:
        """Every engine: installed, missing (with install hint) and broken plugins."""
        self._ensure_loaded()
        found = [self._with_status(i) for i in self._engines.values()]
        found += list(self._broken.values())
        for name, (dist, hint) in KNOWN_EXTERNAL.items():
            if name not in self._engines and name not in self._broken:
                found.append(
                    EngineInfo(
                        name=name, status="missing", plugin=dist, install_hint=hint,
                        error=f"plugin package {dist!r} is not installed",
                    )
                )
        return sorted(found, key=lambda i: (i.status != "installed", i.name))

    def get(self, name: str) -> EngineInfo:
        """The engine called `name` (or an alias), ready to load, or a clear error."""
        self._ensure_loaded()
        key = name.lower()
        key = self._aliases.get(key, key)
        info = self._engines.get(key)
        if info is None:
            if key in self._broken:
                raise EngineUnavailableError(
                    name, f"its plugin failed to load: {self._broken[key].error}"
                )
            if key in KNOWN_EXTERNAL:
                dist, hint = KNOWN_EXTERNAL[key]
                raise EngineUnavailableError(name, f"plugin package {dist!r} is not installed", hint)
            installed = sorted(i.name for i in self.engines() if i.status == "installed")
            known = sorted(set(self._engines) | set(KNOWN_EXTERNAL))
            raise EngineNotFoundError(
                f"no engine named {name!r}. Installed: {', '.join(installed) or 'none'}. "
                f"Known: {', '.join(known)}. Run `unillm engines` for details."
            )
        info = self._with_status(info)
        if info.status == "missing":
            raise EngineUnavailableError(info.name, info.error or "missing", info.install_hint)
        return info


_registry: Registry | None = None
_registry_lock = threading.Lock()


def registry() -> Registry:
    """The process-wide registry, created on first use."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = Registry()
        return _registry


def engines() -> list[EngineInfo]:
    """Every engine unillm knows of, with its status (see `EngineInfo`)."""
    return registry().engines()


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register a plugin (a module or object with `unillm_register_engines`) without an entry
    point: for tests and for engines private to one application."""
    registry().add_plugin(plugin, name)
