"""`ToolPlan`: how one chat call with tools runs, decided when it is prepared.

`plan_tools` is called by `prepared.prepare` once per conversation. It asks `planning` (the one
place that reads an engine's capabilities) whether the engine's server handles the tools
(``server``), unillm enforces them with a grammar (``constrained``), only reads them from the
text (``parsed``), or no call is wanted (``none``); it chooses the format (`detect`), adds the
grammar to the sampling parameters, and hands out what the result and the stream need: one
`ToolStream` per streamed sample, `finish_sample` for every finished one (batch and stream
alike, so both report the same calls with the same ids).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..engine import Engine
from ..errors import InvalidParameterError, UnsupportedParameterError
from ..params import SamplingParams
from ..planning import tool_mode
from ..results import Chunk, Sample, ToolCall, ToolCallDelta
from .detect import FormatChoice, choose_format
from .formats import new_nonce
from .parsing import Parsed, ToolStreamParser
from .request import ToolRequest


@dataclass(frozen=True, eq=False)
class ToolPlan:
    request: ToolRequest
    mode: str  # "server", "constrained", "parsed" or "none"
    choice: FormatChoice | None
    params: SamplingParams
    nonce: str = field(default_factory=new_nonce)
    marker_ids: Mapping[int, str] = field(default_factory=dict)  # special-token markers
    prefix: str = ""  # the rendered prompt, for a response_template's anchors
    decode: Any = None  # the tokenizer's decode, where markers are special tokens

    @property
    def parses(self) -> bool:
        return self.mode in ("constrained", "parsed")

    @property
    def active(self) -> bool:
        """Whether results carry tool calls (``none`` asks for none: plain chat results)."""
        return self.mode != "none"

    @property
    def format_name(self) -> str | None:
        if self.mode == "server":
            return "server"
        return self.choice.name if self.choice is not None and self.parses else None

    def call_id(self, sample: int, call: int) -> str:
        assert self.choice is not None
        fmt = self.choice.fmt
        if fmt is None:  # a response template unillm cannot write: OpenAI-style ids
            from .formats import HERMES as fmt
        return fmt.call_id(self.nonce, sample, call)

    def parser(self, sample: int) -> Any:
        assert self.choice is not None
        ids = lambda call: self.call_id(sample, call)
        if self.choice.template is not None:
            from .template_format import TemplateStreamParser

            return TemplateStreamParser(self.choice.template, self.request.names, ids,
                                        self.prefix, self.request.definitions)
        assert self.choice.fmt is not None
        return ToolStreamParser(self.choice.fmt, self.request.names, ids)

    def parse_input(self, text: str, token_ids: tuple[int, ...] | list[int],
                    decode: Any = None) -> str:
        """The text the parser reads: special-token markers, which decoding skips, put back
        (a chunk's marker at its start or end; a whole sample's between its decoded parts)."""
        if not self.marker_ids or not any(i in self.marker_ids for i in token_ids):
            return text
        if decode is None:  # one chunk: its marker is its first or last token
            first = self.marker_ids.get(token_ids[0], "")
            last = self.marker_ids.get(token_ids[-1], "") if len(token_ids) > 1 else ""
            return first + text + last
        parts, run = [], []
        for token in token_ids:
            if token in self.marker_ids:
                parts.append(decode(run) + self.marker_ids[token])
                run = []
            else:
                run.append(token)
        return "".join(parts) + decode(run)

    def finish_sample(self, sample: Sample, server_calls: list[ToolCall] | None) -> Sample:
        """The sample with its tool calls, content and finish reason (``tool_calls`` where
        it made calls, ended by itself, and every call's arguments are whole JSON: a stop
        string that cut a call leaves ``stop``)."""
        if not self.active:
            return sample
        if self.mode == "server":
            calls = tuple(server_calls or ())
            content = sample.text if (sample.text.strip() or not calls) else None
        else:
            parser = self.parser(sample.index)
            parser.feed(self.parse_input(sample.text, sample.token_ids, self.decode))
            parser.finish()
            calls, content = parser.tool_calls(), parser.content
        whole = self.mode == "server" or all(_is_json(c.arguments) for c in calls)
        finish = "tool_calls" if calls and whole and sample.finish_reason == "stop" \
            else sample.finish_reason
        return replace(sample, tool_calls=calls, content=content, finish_reason=finish)

    def copy_sample(self, sample: Sample, index: int) -> Sample:
        """A greedy copy as sample `index`, its calls with ids of their own."""
        calls = sample.tool_calls
        if calls and self.mode != "server":
            calls = tuple(replace(c, id=self.call_id(index, k)) for k, c in enumerate(calls))
        return replace(sample, index=index, tool_calls=calls)

    def stream(self, sample: int) -> ToolStream:
        return ToolStream(self, sample)


class ToolStream:
    """One streamed sample's chunks with their tool-call pieces and content."""

    def __init__(self, plan: ToolPlan, sample: int):
        self.plan = plan
        self.parser = plan.parser(sample) if plan.parses else None

    def chunk(self, chunk: Chunk, server_deltas: list[ToolCallDelta] | None = None) -> Chunk:
        if self.parser is None:  # the server parsed: its deltas pass through
            return replace(chunk, tool_calls=tuple(server_deltas or ()), content=chunk.text)
        parsed = self.parser.feed(self.plan.parse_input(chunk.text, chunk.token_ids))
        return replace(chunk, tool_calls=tuple(parsed.deltas), content=parsed.content)

    def last(self, chunk: Chunk, finish_reason: str) -> Chunk:
        """The sample's final chunk: the rest of its text, and everything still pending."""
        if self.parser is None:
            return replace(chunk, finish_reason=finish_reason, tool_calls=(),  # type: ignore[arg-type]
                           content=chunk.text)
        parsed = self.parser.feed(chunk.text) if chunk.text else Parsed()
        tail = self.parser.finish()
        return replace(chunk, finish_reason=finish_reason,  # type: ignore[arg-type]
                       tool_calls=tuple(_merged(parsed.deltas + tail.deltas)),
                       content=parsed.content + tail.content)


def _is_json(text: str) -> bool:
    """Whether a call's arguments are whole (a stop string can cut a call short)."""
    import json

    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _merged(deltas: list[ToolCallDelta]) -> list[ToolCallDelta]:
    out: list[ToolCallDelta] = []
    for d in deltas:
        if out and out[-1].index == d.index and d.id is None:
            last = out[-1]
            out[-1] = ToolCallDelta(last.index, last.arguments + d.arguments, last.id, last.name)
        else:
            out.append(d)
    return out


def special_id(tokenizer: Any, text: str) -> int | None:
    """The id of the special token spelled exactly `text`, if the tokenizer has one (it is
    then one token the model emits, and decoding skips it)."""
    hf = getattr(tokenizer, "hf", None)
    if hf is not None:
        for token_id, added in getattr(hf, "added_tokens_decoder", {}).items():
            if getattr(added, "content", None) == text and getattr(added, "special", False):
                return int(token_id)
        return None
    finder = getattr(tokenizer, "special_token_id", None)
    return finder(text) if callable(finder) else None


def plan_tools(engine: Engine, engine_name: str, request: ToolRequest,
               params: SamplingParams) -> ToolPlan:
    """Decide how `request` runs on `engine`; the returned plan's `params` carry the grammar
    where unillm enforces the calls."""
    mode = tool_mode(request.choice, engine.capabilities, engine_name, params)
    if mode == "server":
        return ToolPlan(request, mode, None, params)
    tokenizer = engine.tokenizer
    if mode == "none":
        return ToolPlan(request, mode, None, params)
    choice = choose_format(tokenizer, request.parser)
    markers = {}
    if choice.fmt is not None:
        for text in (choice.fmt.open, choice.fmt.close):
            token = special_id(tokenizer, text) if text else None
            if token is not None:
                markers[token] = text
    if mode == "constrained":
        if choice.fmt is None:
            if request.choice != "auto":
                raise UnsupportedParameterError(
                    engine_name, "tool_choice", request.openai_choice(),
                    "this tokenizer's response_template lays tool calls out in a way unillm "
                    "cannot write a grammar for; name a format it can (tool_parser=hermes, "
                    "llama3_json or mistral) to enforce calls")
            mode = "parsed"
        else:
            params = params.replace(structured={"grammar": _grammar(choice, request, tokenizer)})
    return ToolPlan(request, mode, choice, params, marker_ids=markers,
                    decode=tokenizer.decode if markers else None)


def _grammar(choice: FormatChoice, request: ToolRequest, tokenizer: Any) -> str:
    from ..grammars import compile_constraint
    from ..structured import Structured
    from .constraints import tool_grammar

    assert choice.fmt is not None
    grammar = tool_grammar(choice.fmt, request, lambda text: special_id(tokenizer, text))
    try:
        compile_constraint(Structured(grammar=grammar), tokenizer)
    except InvalidParameterError as exc:
        raise InvalidParameterError(
            "tools", [t.name for t in request.offered],
            f"parameter schemas llguidance can enforce ({exc.allowed})",
            owner="Generator.chat") from None
    return grammar
