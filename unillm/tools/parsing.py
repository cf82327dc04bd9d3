"""Reading tool calls out of generated text, as it streams (`ToolStreamParser`).

One parser for every `ToolFormat` and for both paths: a stream feeds it each chunk's text, a
whole result feeds it the whole text at once (`parse_text`), so the calls a stream's deltas
add up to are the calls of the final result, whatever the chunking (tests check that).

What it promises a caller, as OpenAI's streaming does:
- a call's first delta carries its id and name, as soon as the name is complete; later deltas
  only add to its arguments, in order, and their concatenation is the call's `arguments`;
- `arguments` is the text of the arguments object as the model wrote it (a string holding
  JSON, as some models write it, is unwrapped; a missing or null one is ``{}``);
- content is the text outside calls; whitespace that only separates content from a call, or
  calls from each other, is dropped, so a reply of only calls has no content (None);
- a region that turns out not to be a call (no name, not JSON) goes back into content; a reply
  cut short (``length``) keeps the call it was writing, with the arguments written so far.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from ..results import ToolCall, ToolCallDelta
from .formats import ToolFormat
from .scanner import ObjectScanner

_SPACE = " \t\r\n"


@dataclass
class _Call:
    id: str
    name: str
    arguments: str = ""


@dataclass
class Parsed:
    """What one `feed` or `finish` produced: content text and tool-call pieces."""

    content: str = ""
    deltas: list[ToolCallDelta] = field(default_factory=list)


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that is a proper start of `marker`."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-k:]):
            return k
    return 0


class ToolStreamParser:
    """Feed text pieces in order; each `feed` returns what can be said for sure so far."""

    def __init__(self, fmt: ToolFormat, names: Collection[str], call_id: Callable[[int], str]):
        self.fmt = fmt
        self.names = frozenset(names)
        self.call_id = call_id
        self.calls: list[_Call] = []
        self.content_parts: list[str] = []
        self._buf = ""  # text not yet decided
        self._held_space = ""  # whitespace that may turn out to separate content from a call
        self._mode = "start" if fmt.layout == "json" else "content"
        self._region = ""  # the raw text of the current call region (given back if no call)
        self._scanner: ObjectScanner | None = None
        self._bare = False  # a json-layout call without the open marker
        self._announced = False  # the current call's first delta went out
        self._sent = 0  # characters of the current call's arguments already sent
        self._after_call = False  # content's leading whitespace is dropped after a call

    # -- public ----------------------------------------------------------------------------
    def feed(self, text: str) -> Parsed:
        out = Parsed()
        self._buf += text
        self._run(out, final=False)
        return out

    def finish(self) -> Parsed:
        """The end of the text: decide everything still pending."""
        out = Parsed()
        self._run(out, final=True)
        if self._scanner is not None:
            self._end_call(out, complete=False)
        if self._buf.strip(_SPACE) or self._mode in ("start", "content"):
            self._content(out, self._buf)
        self._buf = ""
        if not self.calls and self._held_space:  # a reply without calls keeps all its text
            out.content += self._held_space
            self.content_parts.append(self._held_space)
        self._held_space = ""
        return out

    @property
    def content(self) -> str | None:
        text = "".join(self.content_parts)
        if self.calls and not text.strip(_SPACE):
            return None
        return text

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(c.id, c.name, c.arguments) for c in self.calls)

    # -- the state machine -----------------------------------------------------------------
    def _run(self, out: Parsed, final: bool) -> None:
        while True:
            before = (self._mode, len(self._buf))
            step = getattr(self, f"_in_{self._mode}")
            step(out, final)
            if (self._mode, len(self._buf)) == before:
                return

    def _in_start(self, out: Parsed, final: bool) -> None:
        """json layout, before anything but whitespace: a reply that opens with ``{`` may be
        a bare call."""
        stripped = self._buf.lstrip(_SPACE)
        if not stripped:
            return
        if stripped[0] == "{":
            self._held_space += self._buf[:len(self._buf) - len(stripped)]
            self._buf = stripped
            self._open_region(bare=True)
            self._region = ""
        else:
            self._mode = "content"

    def _in_content(self, out: Parsed, final: bool) -> None:
        marker = self.fmt.open
        if marker is None:
            self._content(out, self._buf)
            self._buf = ""
            return
        at = self._buf.find(marker)
        if at < 0:
            keep = 0 if final else _partial_suffix(self._buf, marker)
            self._content(out, self._buf[:len(self._buf) - keep])
            self._buf = self._buf[len(self._buf) - keep:]
            return
        before = self._buf[:at]
        if before.strip(_SPACE):
            self._content(out, before)
        self._held_space = ""  # whitespace before a call separates, it is not content
        self._buf = self._buf[at + len(marker):]
        self._open_region(bare=False)

    def _open_region(self, bare: bool) -> None:
        self._bare = bare
        self._region = "" if bare else (self.fmt.open or "")
        self._mode = "array_open" if self.fmt.layout == "array" and not bare else "object"

    def _in_array_open(self, out: Parsed, final: bool) -> None:
        stripped = self._buf.lstrip(_SPACE)
        if not stripped:
            return
        self._region += self._buf[:len(self._buf) - len(stripped)]
        if stripped[0] != "[":
            self._buf = stripped
            self._give_back(out)
            return
        self._region += "["
        self._buf = stripped[1:]
        self._mode = "object"

    def _in_object(self, out: Parsed, final: bool) -> None:
        """Before a call object (whitespace skipped), or inside one."""
        if self._scanner is None:
            stripped = self._buf.lstrip(_SPACE)
            if not stripped:
                return
            self._region += self._buf[:len(self._buf) - len(stripped)]
            self._buf = stripped
            if stripped[0] != "{":
                self._give_back(out)
                return
            self._scanner = ObjectScanner()
            self._announced, self._sent = False, 0
        scanner = self._scanner
        taken = len(scanner.text)
        scanner.feed(self._buf)
        used = (scanner.end if scanner.done else len(scanner.text)) - taken
        self._region += self._buf[:used]
        self._buf = self._buf[used:]
        if scanner.failed:
            self._scanner = None
            if self._announced:  # a broken call: keep what was said
                self._mode = "content"
            else:
                self._give_back(out)
            return
        self._announce(out)
        if scanner.done and self._end_call(out, complete=True):
            self._mode = {"tagged": "close", "array": "array_next",
                          "json": "json_next"}[self.fmt.layout]

    def _in_close(self, out: Parsed, final: bool) -> None:
        """tagged: after a call object, its closing marker (absent: lenient, back to text)."""
        close = self.fmt.close
        stripped = self._buf.lstrip(_SPACE)
        if stripped.startswith(close):
            self._buf = stripped[len(close):]
            self._mode = "content"
        elif close.startswith(stripped) and not final:
            return  # wait for more (also when only whitespace so far)
        else:
            self._mode = "content"

    def _in_array_next(self, out: Parsed, final: bool) -> None:
        stripped = self._buf.lstrip(_SPACE)
        if not stripped:
            return
        self._buf = stripped[1:]
        if stripped[0] == ",":
            self._mode = "object"
        else:  # "]" ends the calls (anything else: the model left the format)
            if stripped[0] != "]":
                self._buf = stripped
            self._mode = "content"

    def _in_json_next(self, out: Parsed, final: bool) -> None:
        stripped = self._buf.lstrip(_SPACE)
        if not stripped:
            return
        if stripped[0] == ";":
            self._buf = stripped[1:]
            self._mode = "object"
        else:
            self._mode = "content"

    # -- calls -----------------------------------------------------------------------------
    def _announce(self, out: Parsed) -> None:
        """The call's first delta once its name is known, then each new piece of its
        arguments (object/array values stream; a string value is unwrapped at its end)."""
        scanner = self._scanner
        assert scanner is not None
        if not self._announced:
            name = scanner.string_value("name")
            if name is None or (self._bare and name not in self.names):
                return
            self._announced = True
            index = len(self.calls)
            self.calls.append(_Call(self.call_id(index), name))
            out.deltas.append(ToolCallDelta(index, "", self.calls[-1].id, name))
        member = scanner.member(*self.fmt.argument_keys)
        if member is None or member.kind not in ("object", "array"):
            return
        text = scanner.value_text(member)
        if len(text) > self._sent:
            self._send(out, text[self._sent:])

    def _send(self, out: Parsed, piece: str) -> None:
        call = self.calls[-1]
        call.arguments += piece
        self._sent += len(piece)
        last = out.deltas[-1] if out.deltas else None
        if last is not None and last.index == len(self.calls) - 1:  # merge into this feed's
            out.deltas[-1] = ToolCallDelta(last.index, last.arguments + piece, last.id, last.name)
        else:
            out.deltas.append(ToolCallDelta(len(self.calls) - 1, piece))

    def _end_call(self, out: Parsed, complete: bool) -> bool:
        """The call object ended (or the text did): True if it was a call, else its text went
        back into content."""
        scanner = self._scanner
        self._scanner = None
        assert scanner is not None
        if not self._announced:
            self._give_back(out)
            return False
        member = scanner.member(*self.fmt.argument_keys)
        if complete and member is not None and member.kind in ("string", "scalar"):
            self._send(out, _unwrapped(scanner.value_text(member)))
        elif complete and member is None:
            self._send(out, "{}")
        self._region = ""
        self._after_call = True
        return True

    def _give_back(self, out: Parsed) -> None:
        """The region was not a call: its raw text, and what follows, is content."""
        region, self._region = self._region, ""
        self._scanner = None
        self._mode = "content"
        if region:
            self._content(out, region)

    def _content(self, out: Parsed, text: str) -> None:
        """Content text; trailing whitespace is held until content (not a call) follows."""
        if self._after_call:  # whitespace after a call separates, it is not content
            text = text.lstrip(_SPACE)
            self._after_call = not text
        if not text:
            return
        text = self._held_space + text
        body = text.rstrip(_SPACE)
        self._held_space = text[len(body):]
        if body:
            out.content += body
            self.content_parts.append(body)


def _unwrapped(value: str) -> str:
    """A string-valued or scalar arguments member as JSON object text: the JSON inside a
    string, ``{}`` for null, else the value itself."""
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    if decoded is None:
        return "{}"
    if isinstance(decoded, str):
        try:
            json.loads(decoded)
        except ValueError:
            return json.dumps(decoded, ensure_ascii=False)
        return decoded
    return value


def parse_text(fmt: ToolFormat, text: str, names: Collection[str],
               call_id: Callable[[int], str]) -> tuple[str | None, tuple[ToolCall, ...]]:
    """(content, tool calls) of a whole reply: the stream parser fed once."""
    parser = ToolStreamParser(fmt, names, call_id)
    parser.feed(text)
    parser.finish()
    return parser.content, parser.tool_calls()
