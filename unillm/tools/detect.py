"""Which tool-call format a model uses: declared by its tokenizer, named by the caller, or
recognised in its chat template.

The order, most trusted first: the caller's ``tool_parser`` (on `unillm.load`, on the call,
or `unillm serve --tool-parser`); the tokenizer's ``response_template`` (the model's own
declaration, transformers 5); the chat template's own text, which spells the format it
teaches the model (``<tool_call>``, ``[TOOL_CALLS]``, ``<|python_tag|>``...). When none of
these decides, the call fails before anything runs, naming ``tool_parser`` and its values:
guessing would parse the wrong thing silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidParameterError
from .formats import (
    FORMATS,
    PARSER_NAMES,
    RESPONSE_TEMPLATE,
    ToolFormat,
    check_parser_name,
)
from .template_format import as_tool_format, declared_template


@dataclass(frozen=True, eq=False)
class FormatChoice:
    """The format chosen: its name, the `ToolFormat` unillm writes and reads (None when only
    the tokenizer's response template can read it), and that template, if it is the reader."""

    name: str
    fmt: ToolFormat | None
    template: Mapping[str, Any] | None = None
    source: str = "template"  # "caller", "response_template" or "template"


def template_text(tokenizer: Any) -> str:
    """The chat template's source (every named template, for tokenizers that have several)."""
    hf = getattr(tokenizer, "hf", None)
    template = getattr(hf if hf is not None else tokenizer, "chat_template", None)
    if isinstance(template, Mapping):
        return "\n".join(str(t) for t in template.values())
    return template or ""


def format_in_template(template: str) -> str | None:
    """The format whose markers the template spells, if exactly one family's do."""
    for fmt in FORMATS.values():
        if any(marker in template for marker in fmt.template_markers):
            return fmt.name
    return None


def choose_format(tokenizer: Any, requested: str | None) -> FormatChoice:
    declared = declared_template(tokenizer)
    if requested is not None:
        name = check_parser_name(requested)
        if name != RESPONSE_TEMPLATE:
            return FormatChoice(name, FORMATS[name], source="caller")
        if declared is None:
            raise InvalidParameterError(
                "tool_parser", requested, "a format name other than response_template: this "
                "model's tokenizer declares no response_template with tool_calls",
                owner="unillm")
        return FormatChoice(RESPONSE_TEMPLATE, as_tool_format(declared), declared, "caller")
    if declared is not None:
        return FormatChoice(RESPONSE_TEMPLATE, as_tool_format(declared), declared,
                            "response_template")
    name = format_in_template(template_text(tokenizer))
    if name is None:
        raise InvalidParameterError(
            "tool_parser", None,
            f"one of {', '.join(PARSER_NAMES)}: this model's chat template spells no tool-call "
            "format unillm recognises (and its tokenizer declares no response_template), so "
            "which one it was trained on cannot be told. Name it: unillm.load(..., "
            "tool_parser=NAME), gen.chat(..., tool_parser=NAME) or unillm serve --tool-parser "
            "NAME", owner="unillm")
    return FormatChoice(name, FORMATS[name])
