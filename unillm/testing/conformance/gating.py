"""Skip what cannot run here, with the reason; fail instead where CI says it must run.

An engine whose package is not installed is skipped with the reason and its install command,
so pytest's summary says what did not run and why. ``UNILLM_REQUIRE_ENGINES=a,b`` (a comma-
separated list of engine names) turns "not installed" into a failure for those engines: set it
in CI, so a broken install cannot pass as a row of skips.
"""

from __future__ import annotations

import os

import pytest

import unillm


def required_engines() -> frozenset[str]:
    """The engines that must run here (``UNILLM_REQUIRE_ENGINES``)."""
    return frozenset(e for e in os.environ.get("UNILLM_REQUIRE_ENGINES", "").split(",") if e)


REQUIRED_ENGINES = required_engines()  # as the process started (tests read it at import)


def require_engine(name: str) -> unillm.EngineInfo:
    """The engine's info if it can run here; otherwise skip (or fail, if CI requires it)."""
    infos = {i.name: i for i in unillm.engines()}
    info = infos.get(name)
    if info is not None and info.status == "installed":
        return info
    if info is None:
        reason = f"engine {name!r} is not registered"
    else:
        reason = f"engine {name!r} is {info.status}: {info.error}"
        if info.install_hint:
            reason += f" (install: {info.install_hint})"
    require(False, reason, name)
    raise AssertionError("unreachable")  # pragma: no cover


def require(condition: bool, reason: str, engine: str) -> None:
    """Skip when `condition` fails, or fail when CI requires `engine` to run."""
    if condition:
        return
    if engine in required_engines():
        pytest.fail(f"{reason} -- but UNILLM_REQUIRE_ENGINES requires {engine!r}", pytrace=False)
    pytest.skip(reason)
