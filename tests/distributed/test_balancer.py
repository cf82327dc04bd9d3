"""Least-outstanding-work placement (no Ray needed)."""

from __future__ import annotations

import threading

import pytest

from unillm.distributed.balancer import Balancer, NoReplicaError


def test_unequal_prompts_are_balanced_by_work_not_by_count():
    b = Balancer(2)
    # Round-robin would put 100 + 10 + 10 on one replica and 10 + 10 + 10 on the other.
    placed = b.assign([100, 10, 10, 10, 10, 10])
    long_replica = placed[0]
    assert placed.count(long_replica) == 1  # the long request is alone...
    assert b.work[long_replica] == 100 and b.work[1 - long_replica] == 50  # ...the rest elsewhere


def test_work_in_flight_counts_until_released():
    b = Balancer(2)
    [busy] = b.assign([500])
    assert b.assign([10, 10, 10]) == [1 - busy] * 3  # everything new avoids the busy replica
    b.release(busy, 500)
    assert b.work[busy] == 0
    assert b.assign([40])[0] == busy


def test_a_failed_replica_gets_no_work_until_it_is_back():
    b = Balancer(2)
    b.mark_down(0)
    assert b.assign([10, 10, 10]) == [1, 1, 1]
    with pytest.raises(NoReplicaError, match="restarting"):
        b.assign([10], exclude={1}, timeout=0.05)
    threading.Timer(0.05, b.mark_up, args=(0,)).start()
    assert b.assign([10], exclude={1}, timeout=5) == [0]  # waits for the restart


def test_a_retry_avoids_the_failed_replica_unless_it_is_the_only_one_left():
    b = Balancer(2)
    assert b.avoid(0) == {0}
    b.mark_gone(1)
    assert b.avoid(0) == frozenset()  # wait for replica 0's restart instead
    b.mark_gone(0)
    with pytest.raises(NoReplicaError, match="max_restarts"):
        b.assign([1], timeout=5)  # nothing left to wait for: fails at once
