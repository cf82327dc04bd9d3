"""OpenAI request fields -> `SamplingParams` and prompts, so a server request means exactly what
the same call through the library means.

The differences from OpenAI's spelling are written here once: `max_completion_tokens` is
`max_tokens`; chat's `logprobs: true` + `top_logprobs: k` is `logprobs=k`; vLLM's `top_k` of
-1 or 0 means off, which is unillm's None; OpenAI's `logit_bias` (token ids as strings) is
`logit_bias`; a completion's `echo` with `logprobs: k` asks for
`prompt_logprobs=k` (as vLLM's server does), and `echo` with `max_tokens: 0` returns the prompt
alone (one token is generated and dropped, as vLLM does). vLLM's `skip_special_tokens` is
`SamplingParams.skip_special_tokens` (false keeps special tokens in the text, on every engine
that returns token ids; a text engine whose server cannot is a 400). Sampling fields the request
cannot express in unillm (suffix, best_of, echo in a stream, prompt_logprobs on chat,
spaces_between_special_tokens=false with special tokens kept) are a 400 naming the field,
never dropped. OpenAI's `response_format` and vLLM's
`structured_outputs` both become `SamplingParams.structured` (docs/structured.md). A completion without
max_tokens generates 16 tokens, OpenAI's and vLLM's default (chat: up to the context, as
theirs); vLLM's output extras are carried in `Mapped` for the response to apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..params import SamplingParams
from .config import ServeConfig
from .errors import bad_request, from_unillm
from .schemas import VLLM_EXTRAS, ChatRequest, CompletionRequest

_COMMON = ("temperature", "top_p", "n", "stop", "seed", "presence_penalty",
           "frequency_penalty", "logit_bias", *VLLM_EXTRAS)


@dataclass
class Mapped:
    """A request's parameters, and how to name its fields back to the client."""

    params: SamplingParams
    names: dict[str, str] = field(default_factory=dict)  # SamplingParams field -> sent field
    max_tokens_sent: bool = False  # False: the server's cap, lowered to fit the context
    include_stop_str: bool = False  # vLLM's include_stop_str_in_output
    add_special_tokens: bool | None = None  # None: the endpoint's default
    echo: bool = False  # the prompt (and its logprobs) goes before each choice's text
    echo_only: bool = False  # echo with max_tokens 0: the prompt alone
    prompt_logprobs: bool = False  # vLLM's prompt_logprobs field in each choice


def completion_params(req: CompletionRequest, config: ServeConfig) -> Mapped:
    echo = bool(req.echo)  # null and false both mean no echo
    if echo and req.stream:
        raise bad_request("echo is not supported with stream=true; send stream=false",
                          "echo", "unsupported_parameter")
    if req.suffix is not None:
        raise bad_request("suffix (insertion) is not supported", "suffix")
    if req.best_of is not None and req.best_of != (req.n if req.n is not None else 1):
        raise bad_request("best_of is not supported (it must be unset or equal to n)",
                          "best_of")
    values, names = _common(req, prompt_logprobs=True)
    if req.logprobs is not None:
        values["logprobs"] = req.logprobs
        if echo and "prompt_logprobs" not in values:
            values["prompt_logprobs"] = req.logprobs  # vLLM: echo scores the prompt
            names["prompt_logprobs"] = "logprobs"
    max_tokens = req.max_tokens if req.max_tokens is not None else min(
        config.completion_max_tokens, config.max_tokens_cap)
    echo_only = echo and max_tokens == 0 and not isinstance(max_tokens, bool)
    mapped = _build(req, values, names, "max_tokens", 1 if echo_only else max_tokens, config)
    mapped.max_tokens_sent = req.max_tokens is not None
    mapped.echo, mapped.echo_only = echo, echo_only
    mapped.prompt_logprobs = req.prompt_logprobs is not None
    return mapped


def chat_params(req: ChatRequest, config: ServeConfig) -> Mapped:
    values, names = _common(req)  # tools: serve/tools.py
    if req.top_logprobs is not None and not req.logprobs:
        raise bad_request("top_logprobs requires logprobs to be true", "top_logprobs")
    if req.logprobs:
        values["logprobs"] = req.top_logprobs if req.top_logprobs is not None else 0
        names["logprobs"] = "top_logprobs" if req.top_logprobs is not None else "logprobs"
    if req.max_tokens is not None and req.max_completion_tokens is not None:
        raise bad_request("send max_completion_tokens or max_tokens, not both",
                          "max_completion_tokens")
    if req.max_completion_tokens is not None:
        return _build(req, values, names, "max_completion_tokens", req.max_completion_tokens,
                      config)
    return _build(req, values, names, "max_tokens", req.max_tokens, config)


def _refuse(value: Any, name: str, message: str) -> None:
    if value:  # empty dicts/lists change nothing: clients send them by default
        raise bad_request(message, name, "unsupported_parameter")


def _common(req: CompletionRequest | ChatRequest,
            prompt_logprobs: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    if req.stream_options is not None and not req.stream:
        raise bad_request("stream_options is only allowed with stream=true", "stream_options")
    if req.prompt_logprobs is not None and (not prompt_logprobs or req.stream):
        raise bad_request("prompt_logprobs is supported on /v1/completions without stream; "
                          "leave it unset", "prompt_logprobs", "unsupported_parameter")
    # skip_special_tokens is SamplingParams' own field (a VLLM_EXTRAS). Where special tokens
    # are skipped, vLLM ignores spaces_between_special_tokens; where they are kept, unillm
    # writes them as the tokenizer's decoder joins them, which is vLLM's default (true) on
    # the fast tokenizers unillm loads; false, which changes that joining, is refused.
    if req.skip_special_tokens is False and req.spaces_between_special_tokens is False:
        raise bad_request("spaces_between_special_tokens=false is not supported with "
                          "skip_special_tokens=false: special tokens are joined as the "
                          "tokenizer decodes them (true, vLLM's default); leave it unset",
                          "spaces_between_special_tokens", "unsupported_parameter")
    values = {name: getattr(req, name) for name in _COMMON if getattr(req, name) is not None}
    if req.prompt_logprobs is not None:
        values["prompt_logprobs"] = req.prompt_logprobs
    if values.get("top_k") in (-1, 0) and not isinstance(values.get("top_k"), bool):
        values["top_k"] = None  # vLLM's server spells "off" as -1 (or 0)
    names: dict[str, str] = {}
    structured = _structured(req)
    if structured is not None:
        values["structured"], source = structured
        for name in ("structured", "json_schema", "regex", "choice", "grammar", "whitespace"):
            names[name] = source  # a bad constraint names the field the client sent
    return values, names


def _structured(req: CompletionRequest | ChatRequest) -> tuple[dict[str, Any], str] | None:
    """(the constraint as `Structured` fields, the request field it came from), or None."""
    fmt, vllm = req.response_format, req.structured_outputs
    if fmt is not None and fmt.type == "text":
        fmt = None
    if fmt is not None and vllm is not None:
        raise bad_request("send response_format or structured_outputs, not both",
                          "structured_outputs")
    if fmt is not None:
        if fmt.type == "json_object":
            return {"json_schema": {"type": "object"}}, "response_format"
        if fmt.json_schema is None or fmt.json_schema.schema_ is None:
            raise bad_request("response_format type 'json_schema' needs json_schema.schema",
                              "response_format.json_schema")
        return {"json_schema": fmt.json_schema.schema_}, "response_format.json_schema.schema"
    if vllm is None:
        return None
    given = {k: v for k, v in (("json_schema", vllm.json_), ("regex", vllm.regex),
                               ("choice", vllm.choice), ("grammar", vllm.grammar)) if v is not None}
    if vllm.json_object:
        given["json_schema"] = {"type": "object"}
    if len(given) != 1:
        raise bad_request("structured_outputs takes exactly one of json, regex, choice, grammar, "
                          f"json_object (got {len(given)})", "structured_outputs")
    return given, "structured_outputs"


def _build(req: Any, values: dict[str, Any], names: dict[str, str], max_name: str,
           max_tokens: Any, config: ServeConfig) -> Mapped:
    names["max_tokens"] = max_name
    sent = max_tokens is not None
    if sent:
        if (isinstance(max_tokens, int) and not isinstance(max_tokens, bool)
                and max_tokens > config.max_tokens_cap):
            raise bad_request(
                f"{max_name} = {max_tokens} exceeds this server's cap of "
                f"{config.max_tokens_cap}", max_name)
        values["max_tokens"] = max_tokens
    else:
        values["max_tokens"] = config.max_tokens_cap
    try:
        params = SamplingParams(**values)
    except ValueError as exc:
        raise from_unillm(exc, names, "prompt") from None
    return Mapped(params, names, sent, include_stop_str=bool(req.include_stop_str_in_output),
                  add_special_tokens=req.add_special_tokens)
