"""The OpenAI request bodies the server accepts, field by field.

Unknown fields are a 400 naming them: a sampling field unillm does not know would otherwise be
dropped silently. The fields OpenAI clients send that change nothing about generation are
accepted and ignored, and listed here (`IGNORED`). Sampling fields are typed loosely on
purpose: `SamplingParams` validates them, so the server and the library give the same
messages and ranges.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

IGNORED = ("user", "metadata", "store", "parallel_tool_calls")
"""Accepted and ignored: they label or route a request, never change its tokens."""

VLLM_EXTRAS = ("top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos",
               "stop_token_ids")
"""Sampling fields vLLM's OpenAI server accepts beyond OpenAI's own (sent via extra_body)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class StreamOptions(_Strict):
    include_usage: StrictBool = False
    continuous_usage_stats: StrictBool = False


class _Sampling(_Strict):
    """Fields shared by both endpoints; `None` means "not sent" (unillm's default)."""

    model: StrictStr
    max_tokens: Any = None
    temperature: Any = None
    top_p: Any = None
    n: Any = None
    stop: Any = None
    seed: Any = None
    presence_penalty: Any = None
    frequency_penalty: Any = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    logit_bias: dict[str, Any] | None = None
    # vLLM's extras
    top_k: Any = None
    min_p: Any = None
    repetition_penalty: Any = None
    min_tokens: Any = None
    ignore_eos: Any = None
    stop_token_ids: Any = None
    # accepted and ignored (IGNORED)
    user: Any = None
    metadata: Any = None
    store: Any = None
    parallel_tool_calls: Any = None


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    prompt: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    logprobs: Any = None
    echo: StrictBool = False
    suffix: StrictStr | None = None
    best_of: StrictInt | None = None


class TextPart(_Strict):
    type: Literal["text"]
    text: StrictStr


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None

    def as_template_message(self) -> dict[str, Any]:
        """The message as a chat template reads it (text parts joined)."""
        content = self.content
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        message: dict[str, Any] = {"role": self.role, "content": content or ""}
        if self.name is not None:
            message["name"] = self.name
        return message


class ChatRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Any = None
    logprobs: StrictBool | None = None
    top_logprobs: Any = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None


def error_location(loc: tuple[Any, ...]) -> str:
    """``("messages", 0, "content")`` -> ``messages[0].content`` (OpenAI's spelling)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[str]", "list[int]", "list[list[int]]", "list[TextPart]",
                      "TextPart", "StreamOptions", "constrained-str", "function-plain[str]"):
            continue  # pydantic's name for a union member, not a field
        else:
            out += f".{part}" if out else str(part)
    return out
