"""`/openapi.json`: the server's schema, built from the very models that validate requests.

The routes read their bodies themselves (so that every validation error is OpenAI's shape, not
FastAPI's 422), which hides the bodies from FastAPI's generator; `build_openapi` puts them
back: each POST route's request body is its pydantic model, and every response is declared,
errors included, so a client generator or a fuzzer (tests/serve/test_fuzz.py checks every
response against this schema) sees what the server really does.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from ..params import SamplingParams
from .schemas import (
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(_Open):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(_Open):
    error: ErrorDetail


class PromptTokensDetails(_Open):
    cached_tokens: int  # prompt tokens the engine took from its prompt cache


class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None  # engines that say (llama.cpp)


class CompletionChoice(_Open):
    index: int
    text: str
    logprobs: dict[str, Any] | None
    finish_reason: str | None


class CompletionResponse(_Open):
    id: str
    object: str
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class CalledFunctionOut(_Open):
    name: str
    arguments: str  # JSON text of the arguments object


class ToolCallOut(_Open):
    id: str
    type: str
    function: CalledFunctionOut


class ChatMessageOut(_Open):
    role: str
    content: str | None  # null when the reply is only tool calls
    tool_calls: list[ToolCallOut] | None = None  # with tools: the calls (finish_reason tool_calls)


class ChatChoice(_Open):
    index: int
    message: ChatMessageOut
    logprobs: dict[str, Any] | None
    finish_reason: str | None


class ChatResponse(_Open):
    id: str
    object: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ModelCard(_Open):
    id: str
    object: str
    created: int
    owned_by: str


class ModelList(_Open):
    object: str
    data: list[ModelCard]


class TokenizeResponse(_Open):
    count: int
    max_model_len: int | None
    tokens: list[int]


class DetokenizeResponse(_Open):
    prompt: str


class VersionResponse(_Open):
    version: str


class HealthResponse(_Open):
    status: str


REQUESTS: dict[str, type[BaseModel]] = {
    "/v1/completions": CompletionRequest,
    "/v1/chat/completions": ChatRequest,
    "/tokenize": TokenizeRequest,
    "/detokenize": DetokenizeRequest,
}
RESPONSES: dict[str, type[BaseModel]] = {
    "/v1/completions": CompletionResponse,
    "/v1/chat/completions": ChatResponse,
    "/tokenize": TokenizeResponse,
    "/detokenize": DetokenizeResponse,
    "/v1/models": ModelList,
    "/v1/models/{model_id}": ModelCard,
    "/version": VersionResponse,
    "/health": HealthResponse,
}
SAMPLING_ALIASES = {"max_completion_tokens": "max_tokens", "top_logprobs": "logprobs"}
STREAMING = frozenset({"/v1/completions", "/v1/chat/completions"})
ERRORS = {"400": "invalid request: the message and param name the field",
          "401": "missing or invalid API key", "404": "unknown model or route",
          "413": "request body too large", "429": "queue full; see Retry-After",
          "500": "a server fault (an engine failure)", "503": "the engine is closed"}


def build_openapi(app: FastAPI, served_model_name: str) -> dict[str, Any]:
    """The document; `model` fields are declared as the one name served, which is true of
    this server (any other is a 404) and lets generated requests reach the engine."""
    doc = get_openapi(title="unillm serve", version=app.version, routes=app.routes,
                      description="OpenAI-compatible API over one unillm Generator.")
    models = [(m, "validation") for m in {*REQUESTS.values(), *RESPONSES.values(),
                                          ErrorResponse}]
    _, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(defs.get("$defs", {}))
    sampling = SamplingParams.model_json_schema()["properties"]
    for name in (m.__name__ for m in REQUESTS.values()):
        props = schemas[name]["properties"]
        for key, value in list(props.items()):
            # Sampling fields are typed Any in the request models (SamplingParams validates
            # them); declare SamplingParams' own types and ranges, or null.
            source = SAMPLING_ALIASES.get(key, key)
            if source in sampling and not set(value) - {"title", "default"}:
                declared = {k: v for k, v in sampling[source].items()
                            if k not in ("default", "title")}
                props[key] = {"anyOf": [declared, {"type": "null"}], "default": None}
        field = props["model"]
        served = {"type": "string", "enum": [served_model_name]}
        schemas[name]["properties"]["model"] = (
            {"anyOf": [served, {"type": "null"}], "default": None} if "anyOf" in field
            else served)

    def ref(model: type[BaseModel]) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    error = {"application/json": {"schema": ref(ErrorResponse)}}
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if path in REQUESTS and method == "post":
                op["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": ref(REQUESTS[path])}}}
            ok: dict[str, Any] = {}
            if path in RESPONSES:
                ok["application/json"] = {"schema": ref(RESPONSES[path])}
            if path in STREAMING:
                ok["text/event-stream"] = {"schema": {"type": "string"}}
            if path == "/metrics":
                ok["text/plain"] = {"schema": {"type": "string"}}
            responses = {"200": {"description": "OK", "content": ok}} if ok else {
                "200": {"description": "OK"}}
            for status, text in ERRORS.items():
                responses[status] = {"description": text, "content": error}
            op["responses"] = responses
    return doc
