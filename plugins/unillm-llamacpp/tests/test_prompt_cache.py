"""The host-memory store of the running batch's prompt cache (prompt_cache.py): pure Python."""

from __future__ import annotations

import random

from unillm_llamacpp.prompt_cache import SavedStates, common_prefix


def test_common_prefix_equals_a_token_by_token_count():
    rng = random.Random(0)
    for _ in range(500):
        a = [rng.randrange(4) for _ in range(rng.randrange(12))]
        b = a[:rng.randrange(len(a) + 1)] + [rng.randrange(4) for _ in range(rng.randrange(6))]
        slow = 0
        while slow < min(len(a), len(b)) and a[slow] == b[slow]:
            slow += 1
        assert common_prefix(a, b) == slow == common_prefix(tuple(b), a)


def test_the_longest_shared_start_wins_and_the_least_recently_used_goes_first():
    saved = SavedStates(budget=10)
    saved.put((1, 2, 3), b"abc")
    saved.put((1, 2), b"ab")
    saved.put((5, 6), b"xy")
    assert saved.longest([1, 2, 3, 4]) == (3, (1, 2, 3))
    assert saved[(1, 2, 3)] == b"abc"
    assert saved.longest([1, 2, 9])[0] == 2
    assert saved.longest([7]) == (0, None)
    assert saved.touch((1, 2, 3)) and not saved.touch((7,))  # (1, 2, 3): the most recent
    saved.put((8,), b"1234")  # 11 bytes: (1, 2), the least recently used, goes
    assert (1, 2) not in saved and len(saved) == 3 and saved.used == 9
    saved.put((9,), b"x" * 11)  # larger than the budget: not kept
    assert (9,) not in saved and saved.used == 9


def test_a_zero_budget_keeps_nothing():
    saved = SavedStates(budget=0)
    saved.put((1,), b"a")
    assert len(saved) == 0 and saved.longest([1]) == (0, None)
