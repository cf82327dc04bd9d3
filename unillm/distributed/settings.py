"""How replicas are placed and supervised: the `unillm.load(..., replicas=N, ...)` arguments."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_CONCURRENCY = 64
"""Calls one replica actor accepts at once (threads): concurrent batch calls and open streams.
The engine itself still runs one call at a time unless it declares `concurrent`."""


class ReplicaSettings(BaseModel):
    """Validated replica arguments; the defaults suit a CPU engine on one machine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replicas: int = Field(ge=1, description="number of engine copies (Ray actors)")
    ray_address: str | None = Field(
        None, description="Ray cluster to join (ray://host:10001, host:6379, auto); default "
        "$RAY_ADDRESS, else a local Ray started on demand"
    )
    num_cpus: float = Field(1.0, ge=0, description="CPUs Ray reserves for each replica")
    num_gpus: float = Field(0.0, ge=0, description="GPUs Ray reserves for each replica")
    retry: bool = Field(
        False, description="re-run the requests of a replica that died on another replica, once"
    )
    max_restarts: int = Field(
        3, ge=-1, description="times Ray restarts a replica whose process died (-1: always)"
    )
    ray_actor_options: dict[str, Any] = Field(
        default_factory=dict,
        description="extra ray actor options (resources, runtime_env, scheduling_strategy, ...)",
    )

    @classmethod
    def parse(cls, **given: Any) -> ReplicaSettings:
        """Validated, or an error naming the argument and what it allows."""
        from ..building import parse_options

        return parse_options("", cls, given, owner="unillm.load")

    def actor_options(self) -> dict[str, Any]:
        """Options for `ray.remote(...).options(...)`: resources, restarts, concurrency.

        Tasks are never retried by Ray itself (`max_task_retries=0`): a batch that died with its
        replica is either failed or re-run on another replica by unillm, as `retry` says, so a
        request never runs twice behind the caller's back.
        """
        options: dict[str, Any] = {
            "num_cpus": self.num_cpus,
            "max_restarts": self.max_restarts,
            "max_task_retries": 0,
            "max_concurrency": MAX_CONCURRENCY,
        }
        if self.num_gpus:
            options["num_gpus"] = self.num_gpus
        options.update(self.ray_actor_options)
        return options
