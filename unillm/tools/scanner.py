"""`ObjectScanner`: one JSON object read character by character, as a model writes it.

A streamed tool call must say its name as soon as the model has written it and pass its
arguments on as they grow, so the parser cannot wait for the whole object. The scanner tracks
only what that needs: the object's top-level keys, where each value starts and ends (strings,
nested objects and arrays, bare numbers/literals), and where the object itself ends. It never
decodes anything but keys and the `name` value, so it costs one pass over the text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

_SPACE = " \t\r\n"


@dataclass
class Member:
    """One top-level ``"key": value`` of the object; `end` is None while the value grows."""

    key: str
    start: int
    end: int | None = None
    kind: str = ""  # "string", "object", "array" or "scalar"


@dataclass
class ObjectScanner:
    """Feed text; `done` once the object closes (`end` is then the index just past ``}``),
    `failed` if the text is not a JSON object. Indices are into `text`."""

    text: str = ""
    pos: int = 0
    depth: int = 0
    in_string: bool = False
    escaped: bool = False
    expect: str = "open"  # open, key, colon, value, in_value, comma
    key_start: int = 0
    members: list[Member] = field(default_factory=list)
    done: bool = False
    failed: bool = False
    end: int | None = None

    def feed(self, piece: str) -> None:
        self.text += piece
        text, n = self.text, len(self.text)
        i = self.pos
        while i < n and not (self.done or self.failed):
            c = text[i]
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif c == "\\":
                    self.escaped = True
                elif c == '"':
                    self.in_string = False
                    if self.depth == 1:
                        self._string_closed(i)
                i += 1
                continue
            if self.depth == 1 or self.expect == "open":
                self._top(c, i)
            elif c == '"':
                self.in_string = True
            elif c in "{[":
                self.depth += 1
            elif c in "}]":
                self.depth -= 1
                if self.depth == 1:
                    member = self.members[-1]
                    member.end = i + 1
                    self.expect = "comma"
            i += 1
        self.pos = i

    def _top(self, c: str, i: int) -> None:
        """A character outside strings at the object's own level (or before it)."""
        expect = self.expect
        if expect == "in_value":  # a scalar ends at "," or "}"
            if c in ",}":
                member = self.members[-1]
                member.end = len(self.text[:i].rstrip(_SPACE))
                self.expect = "comma"
                self._top(c, i)
            elif c in '"{[':
                self.failed = True
            return
        if c in _SPACE:
            return
        if expect == "open":
            if c == "{":
                self.depth, self.expect = 1, "key"
            else:
                self.failed = True
        elif expect == "key":
            if c == '"':
                self.in_string, self.key_start = True, i
            elif c == "}" and not self.members:
                self._close(i)
            else:
                self.failed = True
        elif expect == "colon":
            if c == ":":
                self.expect = "value"
            else:
                self.failed = True
        elif expect == "value":
            member = self.members[-1]
            member.start = i
            if c == '"':
                member.kind, self.in_string = "string", True
            elif c in "{[":
                member.kind = "object" if c == "{" else "array"
                self.depth += 1
                self.expect = "nested"
            elif c in ",}]:":
                self.failed = True
            else:
                member.kind, self.expect = "scalar", "in_value"
        elif expect == "comma":
            if c == ",":
                self.expect = "key"
            elif c == "}":
                self._close(i)
            else:
                self.failed = True
        else:  # pragma: no cover - "nested" is handled at depth > 1
            self.failed = True

    def _string_closed(self, i: int) -> None:
        if self.expect == "key":
            try:
                key = json.loads(self.text[self.key_start:i + 1])
            except ValueError:
                self.failed = True
                return
            self.members.append(Member(key, -1))
            self.expect = "colon"
        else:  # a string value
            self.members[-1].end = i + 1
            self.expect = "comma"

    def _close(self, i: int) -> None:
        self.depth = 0
        self.done = True
        self.end = i + 1

    # -- what the parser asks -------------------------------------------------------------
    def member(self, *keys: str) -> Member | None:
        """The first member whose key is one of `keys` (in the order of `keys`)."""
        for key in keys:
            for member in self.members:
                if member.key == key and member.start >= 0:
                    return member
        return None

    def string_value(self, key: str) -> str | None:
        """The decoded string value of `key`, once complete."""
        member = self.member(key)
        if member is None or member.end is None or member.kind != "string":
            return None
        try:
            value = json.loads(self.text[member.start:member.end])
        except ValueError:
            return None
        return value if isinstance(value, str) else None

    def value_text(self, member: Member) -> str:
        """The value's text so far (all of it once it has ended)."""
        return self.text[member.start:member.end if member.end is not None else self.pos]
