"""The OpenAI request bodies the server accepts, field by field.

Unknown fields are a 400 naming them: a sampling field unillm does not know would otherwise be
dropped silently. The fields OpenAI clients send that change nothing about generation are
accepted and ignored, and listed here (`IGNORED`). Every field OpenAI marks nullable accepts
null, meaning "not sent". Sampling fields are typed loosely on purpose: `SamplingParams`
validates them, so the server and the library give the same messages and ranges. These models
are also the server's OpenAPI schema (`/openapi.json`), so what a client can read there is
exactly what is validated here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

IGNORED = ("user", "metadata", "store")
"""Accepted and ignored: they label or route a request, never change its tokens."""

VLLM_EXTRAS = ("top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos",
               "stop_token_ids", "allowed_token_ids", "bad_words", "skip_special_tokens")
"""Sampling fields vLLM's OpenAI server accepts beyond OpenAI's own (sent via extra_body)."""

REFUSED = frozenset({"suffix", "best_of"})
"""Fields the schema has so that their refusal names them (a 400 saying why), and that
are therefore not listed as accepted in the unknown-field error."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class StreamOptions(_Strict):
    include_usage: StrictBool | None = None
    continuous_usage_stats: StrictBool | None = None  # vLLM: usage in every chunk


class JSONSchemaFormat(_Strict):
    """OpenAI's ``response_format.json_schema``: the schema and its name."""

    name: StrictStr = Field(min_length=1, max_length=64)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: StrictBool | None = None  # unillm always enforces the schema (strict or not)
    description: StrictStr | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResponseFormat(_Strict):
    """OpenAI's ``response_format``: ``text``, ``json_object`` (any JSON object) or
    ``json_schema`` (a JSON value valid against the given schema)."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StructuredOutputs(_Strict):
    """vLLM's ``structured_outputs`` request field: exactly one constraint."""

    json_: dict[str, Any] | StrictStr | None = Field(None, alias="json")
    regex: StrictStr | None = None
    choice: list[StrictStr] | None = None
    grammar: StrictStr | None = None
    json_object: StrictBool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


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
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    logit_bias: dict[str, Any] | None = None  # token id (as a string) -> bias
    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputs | None = None  # vLLM's
    # vLLM's extras
    top_k: Any = None
    min_p: Any = None
    repetition_penalty: Any = None
    min_tokens: Any = None
    ignore_eos: Any = None
    stop_token_ids: Any = None
    allowed_token_ids: Any = None
    bad_words: Any = None
    include_stop_str_in_output: StrictBool | None = None
    skip_special_tokens: StrictBool | None = None
    spaces_between_special_tokens: StrictBool | None = None
    add_special_tokens: StrictBool | None = None
    prompt_logprobs: Any = None  # vLLM's: /v1/completions only (chat: refused)
    # accepted and ignored (IGNORED)
    user: Any = None
    metadata: Any = None
    store: Any = None


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    prompt: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    logprobs: Any = None
    echo: StrictBool | None = None
    suffix: StrictStr | None = None
    best_of: StrictInt | None = None


class TextPart(_Strict):
    type: Literal["text"]
    text: StrictStr


class FunctionDefinition(_Strict):
    """A tool's ``function``: its name, what it does, its arguments' JSON schema."""

    name: StrictStr
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class Tool(_Strict):
    """One of ``tools``: ``{"type": "function", "function": {...}}``."""

    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(_Strict):
    name: StrictStr


class NamedToolChoice(_Strict):
    """``tool_choice`` naming the one tool to call."""

    type: Literal["function"]
    function: FunctionName


class CalledFunction(_Strict):
    name: StrictStr
    arguments: StrictStr


class ToolCallMessage(_Strict):
    """A call in an assistant message's ``tool_calls`` (a conversation's history)."""

    id: StrictStr
    type: Literal["function"] = "function"
    function: CalledFunction


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCallMessage] | None = None  # assistant messages
    tool_call_id: StrictStr | None = None  # tool messages: the call answered

    def as_template_message(self) -> dict[str, Any]:
        """The message as a chat template reads it (text parts joined)."""
        content = self.content
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        message: dict[str, Any] = {"role": self.role, "content": content or ""}
        if self.name is not None:
            message["name"] = self.name
        if self.tool_calls:
            message["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


class ChatRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Any = None
    logprobs: StrictBool | None = None
    top_logprobs: Any = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    # vLLM's chat-template extras
    chat_template_kwargs: dict[str, Any] | None = None
    add_generation_prompt: StrictBool | None = None
    continue_final_message: StrictBool | None = None


class TokenizeRequest(_Strict):
    """``POST /tokenize`` (vLLM's): a prompt, or messages rendered by the chat template."""

    model: StrictStr | None = None
    prompt: StrictStr | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    add_special_tokens: StrictBool | None = None
    add_generation_prompt: StrictBool | None = None
    continue_final_message: StrictBool | None = None
    chat_template_kwargs: dict[str, Any] | None = None


class DetokenizeRequest(_Strict):
    """``POST /detokenize`` (vLLM's): token ids back to text."""

    model: StrictStr | None = None
    tokens: list[StrictInt]


def accepted_fields(schema: type[BaseModel]) -> list[str]:
    """The fields a request may send with effect: the schema's, less those always refused."""
    return sorted(set(schema.model_fields) - REFUSED)


def error_location(loc: tuple[Any, ...]) -> str:
    """``("messages", 0, "content")`` -> ``messages[0].content`` (OpenAI's spelling)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[str]", "list[int]", "list[list[int]]", "list[TextPart]",
                      "TextPart", "StreamOptions", "ResponseFormat", "constrained-str", "function-plain[str]",
                      "NamedToolChoice"):
            continue  # pydantic's name for a union member, not a field
        elif str(part).startswith("literal["):
            continue  # the Literal member of a union
        else:
            out += f".{part}" if out else str(part)
    return out
