"""Token ids to text, and the stop conditions unillm emulates: written once for every engine.

The rule that keeps streaming and batch calls identical: `finalize` alone decides a sample's
final text, token ids and finish reason, from the full list of ids. The streaming path
(`SampleTracker`) only decides how early text may be released: it holds back anything that
could still become a stop string or an incomplete UTF-8 character, and at the end it emits
whatever `finalize` says is left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .params import SamplingParams

Decode = Callable[[Sequence[int]], str]


def decoder(tokenizer: Any, params: SamplingParams) -> Decode:
    """The decode a sample's text comes from: the tokenizer's `decode` (special tokens
    skipped), or with `params.skip_special_tokens` False its `decode_with_special` (kept, as
    vLLM's detokenizer does). Batch text, streamed text and stop-string matching all use it, so
    they see the same text; a terminating eos/stop token stays out either way (`finalize`)."""
    return tokenizer.decode if params.skip_special_tokens else tokenizer.decode_with_special

REPLACEMENT_CHAR = "\ufffd"


@dataclass(frozen=True)
class StopMatch:
    start: int  # character offset where the stop string begins
    end: int  # character offset just past it
    stop: str


def find_stop(text: str, stops: Sequence[str], min_end: int = 0) -> StopMatch | None:
    """The stop-string occurrence that completes first (smallest end) with end > `min_end`.

    "Completes first" is what a streaming engine sees token by token; on a tie the longer
    string (earlier start) wins.
    """
    best: StopMatch | None = None
    for stop in stops:
        idx = text.find(stop, max(0, min_end - len(stop) + 1))
        if idx < 0:
            continue
        end = idx + len(stop)
        if best is None or end < best.end or (end == best.end and idx < best.start):
            best = StopMatch(idx, end, stop)
    return best


def holdback(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of `text` could be the beginning of a stop string."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest


def tokens_through(ids: Sequence[int], decode: Decode, text: str, char_end: int) -> int:
    """The fewest leading tokens whose decoding already contains `text[:char_end]`."""
    target = text[:char_end]
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if decode(ids[:mid])[:char_end] == target:
            hi = mid
        else:
            lo = mid + 1
    return hi


@dataclass(frozen=True)
class StopRules:
    """The stop conditions unillm applies itself for one request (the engine lacks them)."""

    stop: tuple[str, ...] = ()
    stop_token_ids: frozenset[int] = frozenset()
    min_tokens: int = 0
    terminators: frozenset[int] = frozenset()  # eos ids + stop ids: excluded from the text

    @property
    def active(self) -> bool:
        return bool(self.stop or self.stop_token_ids)


@dataclass(frozen=True)
class Final:
    text: str
    token_ids: tuple[int, ...]
    finish_reason: str
    stop_reason: str | int | None


def _min_end(ids: Sequence[int], decode: Decode, min_tokens: int) -> int | None:
    """Character offset a stop string must end past; None while fewer than min_tokens tokens."""
    if min_tokens <= 1:
        return 0
    if len(ids) < min_tokens:
        return None
    return len(decode(ids[: min_tokens - 1]))


def finalize(
    ids: Sequence[int],
    decode: Decode | None,
    rules: StopRules,
    *,
    engine_finish: str,
    engine_stop_reason: str | int | None = None,
    engine_text: str | None = None,
) -> Final:
    """A sample's final text, ids and finish reason, applying the emulated stop rules.

    `engine_text` is used as-is when the engine produced text itself (HTTP engines, or native
    stop strings); otherwise the text is `decode(ids)` without a terminating eos/stop token.
    """
    ids = list(ids)
    finish, reason = engine_finish, engine_stop_reason

    cut_at = None  # number of tokens kept because of an emulated stop token
    if rules.stop_token_ids:
        for i in range(max(rules.min_tokens - 1, 0), len(ids)):
            if ids[i] in rules.stop_token_ids:
                cut_at = i + 1
                break
    if cut_at is not None:
        ids = ids[:cut_at]
        finish, reason = "stop", ids[-1]

    if engine_text is not None:
        text = engine_text
    elif decode is None:
        text = ""
    else:
        body = ids
        if finish == "stop" and ids and ids[-1] in rules.terminators:
            body = ids[:-1]
        text = decode(body)

    if rules.stop:
        if decode is not None and ids:
            min_end = _min_end(ids, decode, rules.min_tokens)
        else:
            min_end = 0
        match = find_stop(text, rules.stop, min_end) if min_end is not None else None
        if match is not None:
            if decode is not None and ids and engine_text is None:
                ids = ids[: tokens_through(ids, decode, text, match.end)]
            text = text[: match.start]
            finish, reason = "stop", match.stop
    return Final(text, tuple(ids), finish, reason)


class IncrementalDetokenizer:
    """Releases text as tokens arrive, never splitting a multi-byte character.

    The windowed decode (as in vLLM and TGI) decodes a few tokens of left context together with
    the new ones and emits the difference, so tokenizers that change a word's first character
    by context (sentencepiece's leading space) come out right. Text ending in U+FFFD is held
    back until the next token completes the character.
    """

    def __init__(self, decode: Decode):
        self.decode = decode
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def push(self, token_ids: Sequence[int]) -> str:
        self.ids.extend(token_ids)
        prefix_text = self.decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self.decode(self.ids[self.prefix_offset :])
        if len(new_text) > len(prefix_text) and not new_text.endswith(REPLACEMENT_CHAR):
            delta = new_text[len(prefix_text) :]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            return delta
        return ""


class SampleTracker:
    """One sample's state while it streams: ids, text released so far, emulated stop checks.

    `push` returns the text that is safe to release now and whether an emulated stop fired;
    `finish` returns the `Final` record and the text still to release, so the concatenation of
    everything released equals `Final.text` exactly.
    """

    def __init__(self, decode: Decode | None, rules: StopRules):
        self.decode = decode
        self.rules = rules
        self.detok = IncrementalDetokenizer(decode) if decode is not None else None
        self.ids: list[int] = []
        self.text = ""  # text decoded so far (released + held back)
        self.released = 0  # characters of self.text already released
        self.stopped = False
        self._min_end: int | None = None

    def push(self, token_ids: Sequence[int], text: str | None = None) -> str:
        """Add tokens (and/or text from a text-only engine); return the releasable text."""
        if self.stopped:
            return ""
        start_len = len(self.ids)
        self.ids.extend(token_ids)
        if text is None:
            text = self.detok.push(token_ids) if self.detok is not None else ""
        checked_len = len(self.text)
        self.text += text
        if self._stop_fired(start_len, checked_len):
            self.stopped = True
            return ""
        safe = len(self.text) - holdback(self.text, self.rules.stop)
        if safe <= self.released:
            return ""
        out = self.text[self.released : safe]
        self.released = safe
        return out

    def _stop_fired(self, start_len: int, checked_len: int) -> bool:
        """Whether an emulated stop fired among the tokens/text added since the last push."""
        rules = self.rules
        if rules.stop_token_ids:
            first_checked = max(start_len, rules.min_tokens - 1, 0)
            if any(t in rules.stop_token_ids for t in self.ids[first_checked:]):
                return True
        if rules.stop:
            if self._min_end is None and self.decode is not None:
                self._min_end = _min_end(self.ids, self.decode, rules.min_tokens)
            elif self.decode is None:
                self._min_end = 0
            if self._min_end is None:  # fewer than min_tokens tokens: no stop string counts
                return False
            # Earlier text was already checked: only a match ending in the new text is news.
            if find_stop(self.text, rules.stop, max(self._min_end, checked_len)) is not None:
                return True
        return False

    def finish(
        self,
        engine_finish: str,
        engine_stop_reason: str | int | None = None,
        engine_text: str | None = None,
    ) -> tuple[Final, str]:
        """The sample's final record and the text not yet released."""
        if self.stopped:
            engine_finish = "length"  # replaced by finalize's own "stop"
        final = finalize(
            self.ids, self.decode, self.rules, engine_finish=engine_finish,
            engine_stop_reason=engine_stop_reason,
            engine_text=engine_text if engine_text is not None else (
                self.text if self.decode is None else None
            ),
        )
        released = self.text[: self.released]
        if final.text.startswith(released):
            rest = final.text[len(released) :]
        else:  # pragma: no cover - a tokenizer whose decoding is not prefix-stable
            rest = final.text[len(released) :] if len(final.text) > len(released) else ""
        self.released = len(self.text)
        return final, rest

    def should_stop(self, token_ids: Sequence[int], text: str | None = None) -> bool:
        """For engines' per-token hooks in batch calls: True once an emulated stop fired."""
        self.push(token_ids, text)
        return self.stopped
