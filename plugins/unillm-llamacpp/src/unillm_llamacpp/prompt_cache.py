"""The running batch's prompt cache in host memory: sequences' KV states (llama.cpp's
`llama_state_seq_get_data` bytes) kept by the tokens they hold, least recently used dropped
first past a byte budget.

The running batch's free sequences keep their cells until another request takes their id or
a running sequence moves into it; this store keeps what they held from then on, so that a
prompt seen before (the same prompt again, a conversation's next turn) is restored instead of
read, as llama-server's `--cache-ram` does.
It knows nothing of llama.cpp: the batch saves and restores the bytes (batching.py).
"""

from __future__ import annotations

import collections


def common_prefix(a: list[int] | tuple[int, ...], b: list[int] | tuple[int, ...]) -> int:
    """How many leading tokens `a` and `b` share (slices compare in C: a binary search over
    them beats a Python loop over tokens)."""
    n = min(len(a), len(b))
    a, b = list(a[:n]), list(b[:n])
    if a == b:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class SavedStates:
    """KV states by the tokens they hold, within `budget` bytes (0 keeps nothing)."""

    def __init__(self, budget: int):
        self.budget, self.used = budget, 0
        self._states: collections.OrderedDict[tuple[int, ...], bytes] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, tokens: tuple[int, ...]) -> bool:
        return tokens in self._states

    def touch(self, tokens: tuple[int, ...]) -> bool:
        """Mark the state of `tokens` as just used; False when none is kept."""
        if tokens not in self._states:
            return False
        self._states.move_to_end(tokens)
        return True

    def put(self, tokens: tuple[int, ...], state: bytes) -> None:
        """Keep `state` (the KV cells of `tokens`), dropping the least recently used states
        past the budget; a state larger than the budget is not kept."""
        if self.touch(tokens) or len(state) > self.budget:
            return
        self._states[tokens] = state
        self.used += len(state)
        while self.used > self.budget:
            _, dropped = self._states.popitem(last=False)
            self.used -= len(dropped)

    def __getitem__(self, tokens: tuple[int, ...]) -> bytes:
        return self._states[tokens]

    def longest(self, prompt: list[int]) -> tuple[int, tuple[int, ...] | None]:
        """The kept tokens sharing the longest run of leading tokens with `prompt`: (that
        length, those tokens, which key their state); (0, None) when none shares any. Not
        marked as used: `touch` does that when the state is restored."""
        best, found = None, 0
        for tokens in self._states:
            if len(tokens) > found and tokens[0] == (prompt[0] if prompt else None):
                length = common_prefix(tokens, prompt)
                if length > found:
                    best, found = tokens, length
        return found, best
