"""Which replica gets a request: the one with the least outstanding work.

Work is counted in tokens (`WireRequest.cost`: prompt tokens + the most tokens it may
generate) so that one long request weighs as much as many short ones; round-robin over
unequal prompts would leave one replica idle while another still has a long queue. A list of
prompts is placed longest first, each on the replica with the least work (counting what was
just placed), which keeps the replicas' totals within one request of each other.

A replica that failed is left out until it answers again (Ray restarts it; `mark_up` is
called once it does), so new requests never queue behind a restarting replica.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence

from ..errors import NoReplicaError


class Balancer:
    def __init__(self, replicas: int):
        self.work = [0] * replicas  # outstanding tokens per replica
        self.calls = [0] * replicas  # outstanding calls per replica (a tie-breaker)
        self.up = [True] * replicas
        self.gone = [False] * replicas  # dead for good (Ray gave up restarting it)
        self._cond = threading.Condition()

    def _choose(self, exclude: Collection[int], pending: Sequence[int]) -> int | None:
        candidates = [i for i in range(len(self.work)) if self.up[i] and i not in exclude]
        if not candidates:
            return None
        return min(candidates, key=lambda i: (self.work[i] + pending[i], self.calls[i], i))

    def assign(self, costs: Sequence[int], exclude: Collection[int] = (),
               timeout: float | None = None) -> list[int]:
        """The replica for each cost (longest first, each to the least loaded), with the
        work counted as outstanding until `release`d. Waits up to `timeout` seconds for a
        replica to come back when none is up."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._any_up(exclude) or self._none_left(exclude),
                                       timeout=timeout) or not self._any_up(exclude):
                raise NoReplicaError(self._why_none(exclude))
            pending = [0] * len(self.work)
            placed = [0] * len(costs)
            for k in sorted(range(len(costs)), key=lambda k: -costs[k]):
                i = self._choose(exclude, pending)
                assert i is not None
                pending[i] += costs[k]
                placed[k] = i
            for i in set(placed):
                self.calls[i] += 1
            for k, i in enumerate(placed):
                self.work[i] += costs[k]
            return placed

    def release(self, replica: int, cost: int) -> None:
        with self._cond:
            self.work[replica] -= cost
            self.calls[replica] -= 1

    def _any_up(self, exclude: Collection[int]) -> bool:
        return any(u and i not in exclude for i, u in enumerate(self.up))

    def avoid(self, replica: int) -> frozenset[int]:
        """What a retry should exclude: the failed replica, unless no other one is left (one
        replica, or the others dead for good): then the retry waits for its restart."""
        with self._cond:
            others = any(not g for i, g in enumerate(self.gone) if i != replica)
            return frozenset({replica}) if others else frozenset()

    def _none_left(self, exclude: Collection[int]) -> bool:
        """Nothing to wait for: every replica not excluded is dead for good."""
        return all(g or i in exclude for i, g in enumerate(self.gone))

    def _why_none(self, exclude: Collection[int]) -> str:
        if all(self.gone):
            return "every replica died and Ray stopped restarting them (max_restarts reached)"
        return (f"no replica is available: {self.up.count(False)} of {len(self.up)} are "
                f"restarting" + (" and the others were excluded" if exclude else ""))

    def mark_down(self, replica: int) -> bool:
        """Leave the replica out; True if it was up (the caller starts watching it)."""
        with self._cond:
            was_up = self.up[replica]
            self.up[replica] = False
            return was_up

    def mark_up(self, replica: int) -> None:
        with self._cond:
            self.up[replica] = True
            self._cond.notify_all()

    def mark_gone(self, replica: int) -> None:
        with self._cond:
            self.up[replica] = False
            self.gone[replica] = True
            self._cond.notify_all()

    def snapshot(self) -> dict[str, list]:
        with self._cond:
            return {"work": list(self.work), "calls": list(self.calls), "up": list(self.up),
                    "gone": list(self.gone)}
