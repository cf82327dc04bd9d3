"""The one hook an engine plugin implements.

A plugin is a module, named by an entry point in the ``unillm`` group, with::

    @unillm.hookimpl
    def unillm_register_engines(register):
        register("myengine", MyEngine, requires=("mylib",), extra="myengine")

unillm's own engines are registered exactly this way, through its own entry points.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("unillm")
hookimpl = pluggy.HookimplMarker("unillm")


@hookspec
def unillm_register_engines(register: Callable[..., None]) -> None:
    """Register engines: call ``register(name, engine_class, **details)`` once per engine.

    ``details`` (all optional): ``requires`` (import names the engine needs, checked without
    importing them), ``extra`` (the ``unillm[...]`` extra that installs them), ``install`` (an
    install command, when it is not an extra), ``description``, ``aliases``, and ``defaults``
    (options preset for this name, e.g. ``{"quantization": "nf4"}``).
    """

