"""Where a bench ran and with what: machine facts and the version of every engine's packages.

A benchmark figure without these cannot be compared with another one, so every result file
carries them. Nothing here imports an engine: versions come from package metadata.
"""

from __future__ import annotations

import os
import platform
import sys
from functools import cache
from importlib import metadata
from typing import Any


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _usable_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info() -> dict[str, Any]:
    """The host: OS, CPU model and count, memory, Python, the load average at the start (a
    busy shared machine shows here), and the GPUs nvidia-smi reports, if any."""
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": _usable_cpus(),
        "memory_bytes": _memory_bytes(),
        "load_average": _load_average(),
        "python": sys.version.split()[0],
        "gpus": _gpus(),
    }


def _gpus() -> list[str]:
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


@cache
def _module_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


@cache
def _plugin_distributions() -> dict[str, tuple[str, str]]:
    """Entry-point name -> (distribution, version) of every installed unillm plugin."""
    out = {}
    for ep in metadata.entry_points(group="unillm"):
        dist = getattr(ep, "dist", None)
        if dist is not None:
            out[ep.name] = (dist.name, dist.version)
    return out


def package_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def module_versions(modules: tuple[str, ...] | list[str]) -> dict[str, str | None]:
    """Installed distribution versions of the packages that provide these import names."""
    out: dict[str, str | None] = {}
    for module in modules:
        dists = _module_distributions().get(module.split(".")[0]) or [module]
        for dist in dists:
            out[dist] = package_version(dist)
    return out


def versions() -> dict[str, Any]:
    """unillm, the bench tools, and every registered engine with its status and the versions
    of the packages it needs (its plugin's own distribution too, for third-party engines)."""
    import unillm

    engines: dict[str, Any] = {}
    for info in unillm.engines():
        packages = module_versions(list(info.requires))
        dist = _plugin_distributions().get(info.plugin)
        if dist is not None and dist[0] != "unillm":
            packages[dist[0]] = dist[1]
        engines[info.name] = {"status": info.status, "plugin": info.plugin, "packages": packages}
    tools = {d: package_version(d) for d in ("numpy", "optuna", "matplotlib", "httpx", "rich")}
    return {"unillm": unillm.__version__, "engines": engines, "tools": tools}
