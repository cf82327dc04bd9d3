"""The cache's file lock: exclusive, and gone afterwards (a failed build left its .lock)."""

from __future__ import annotations

import threading

import pytest

from unillm.cache import file_lock


def test_the_lock_file_is_removed_after_the_block(tmp_path):
    lock = tmp_path / "sub" / ".thing.lock"
    with file_lock(lock):
        assert lock.exists()
    assert not lock.exists()


def test_the_lock_file_is_removed_when_the_build_fails(tmp_path):
    lock = tmp_path / ".thing.lock"
    with pytest.raises(RuntimeError), file_lock(lock):
        raise RuntimeError("conversion failed")
    assert not lock.exists()


def test_holders_never_overlap_although_each_removes_the_file(tmp_path):
    """Removing the lock file must not let a waiter and a newcomer hold it at once."""
    lock = tmp_path / ".thing.lock"
    inside, overlaps, rounds = [], [], 25

    def worker() -> None:
        for _ in range(rounds):
            with file_lock(lock):
                if inside:
                    overlaps.append(1)
                inside.append(1)
                threading.Event().wait(0.0005)
                inside.pop()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [] and not lock.exists()
