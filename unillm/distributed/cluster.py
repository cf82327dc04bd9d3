"""Joining Ray: an existing session, a cluster by address, or a local Ray started on demand.

A Ray session the application already started (`ray.init(...)` with its own resources,
runtime_env, namespace) is used as it is. Otherwise `ray_address` or $RAY_ADDRESS names a
cluster to join (``ray://head:10001`` through Ray Client, or ``head:6379`` / ``auto`` from a
node of the cluster); with neither, a local Ray is started, and shut down again when the last
replicated generator that needed it closes.
"""

from __future__ import annotations

import logging
import os
import threading

from ..errors import EngineUnavailableError

log = logging.getLogger("unillm.distributed")

_lock = threading.Lock()
_users = 0
_started_here = False


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise EngineUnavailableError(
            "ray", f"replicas need Ray, which is not installed ({exc})", 'pip install "unillm[ray]"'
        ) from None
    return ray


def connect(address: str | None) -> tuple[str, bool]:
    """Make sure this process is connected to Ray; returns (where, started_here)."""
    global _users, _started_here
    ray = import_ray()
    with _lock:
        if ray.is_initialized():
            where = "existing session"
        else:
            address = address or os.environ.get("RAY_ADDRESS") or None
            if address:
                ray.init(address=address)
                where = address
            else:
                ray.init(include_dashboard=False)
                _started_here = True
                where = "local (started by unillm)"
                log.info("started a local Ray: %s", ray.cluster_resources())
        _users += 1
        return where, _started_here


def disconnect() -> None:
    """One replicated generator no longer needs Ray; stop the local Ray we started, if last."""
    global _users, _started_here
    with _lock:
        _users = max(_users - 1, 0)
        if _users == 0 and _started_here:
            import ray

            ray.shutdown()
            _started_here = False
