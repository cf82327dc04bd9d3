"""`ToolCallAccumulator`: a server's streamed ``delta.tool_calls``, put back together.

OpenAI streams a call in pieces: the first names it (``index``, ``id``, ``function.name``),
the rest only add ``function.arguments`` text to the call at the same ``index``. Clients that
key on anything else, or keep only the last piece, lose arguments (LiteLLM #6135, #25605,
openai/codex #7517). Servers also differ: some send a call whole in one piece, some omit
``index`` (each new ``id`` then starts a call), some send the name before the id or never an
id. This accumulates by index whatever the server's habit, and hands on canonical deltas: a
call's first delta once its name is known (with its id and any arguments so far), then only
new argument text, so a unillm stream looks the same whoever served it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..results import ToolCall, ToolCallDelta


@dataclass
class _Pending:
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    sent: int = -1  # characters of arguments handed on; -1 until the first delta went out


class ToolCallAccumulator:
    def __init__(self) -> None:
        self._calls: dict[int, _Pending] = {}
        self._last: int | None = None

    def _index(self, item: Mapping[str, Any]) -> int:
        index = item.get("index")
        if isinstance(index, int) and not isinstance(index, bool):
            return index
        new_id = item.get("id")
        last = self._calls.get(self._last) if self._last is not None else None
        if last is None or (new_id and last.id and new_id != last.id):
            return max(self._calls, default=-1) + 1
        return self._last  # type: ignore[return-value]

    def feed(self, items: Iterable[Mapping[str, Any]] | None) -> list[ToolCallDelta]:
        """One chunk's ``delta.tool_calls`` (or a whole message's ``tool_calls``): the
        canonical deltas they make."""
        out: list[ToolCallDelta] = []
        for item in items or ():
            if not isinstance(item, Mapping):
                continue
            index = self._index(item)
            self._last = index
            call = self._calls.setdefault(index, _Pending())
            if item.get("id") and call.id is None:
                call.id = str(item["id"])
            function = item.get("function") or {}
            if function.get("name") and call.name is None:
                call.name = str(function["name"])
            arguments = function.get("arguments")
            if isinstance(arguments, (dict, list)):
                arguments = json.dumps(arguments, ensure_ascii=False)
            if isinstance(arguments, str):
                call.arguments += arguments
            delta = self._delta(index, call)
            if delta is not None:
                out.append(delta)
        return out

    @staticmethod
    def _delta(index: int, call: _Pending) -> ToolCallDelta | None:
        if call.sent < 0:
            if call.name is None:
                return None  # announced once the name arrives
            call.id = call.id or f"call_{secrets.token_hex(12)}"
            call.sent = len(call.arguments)
            return ToolCallDelta(index, call.arguments, call.id, call.name)
        piece = call.arguments[call.sent:]
        call.sent = len(call.arguments)
        return ToolCallDelta(index, piece) if piece else None

    def calls(self) -> list[ToolCall]:
        """Every named call so far, in index order."""
        out = []
        for index in sorted(self._calls):
            call = self._calls[index]
            if call.name is None:
                continue
            call.id = call.id or f"call_{secrets.token_hex(12)}"
            out.append(ToolCall(call.id, call.name, call.arguments))
        return out
