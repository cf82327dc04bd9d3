"""OpenAI's error shape, and which HTTP status each unillm error becomes.

Clients written for OpenAI read ``{"error": {"message", "type", "param", "code"}}``; the
`param` names the request field at fault, in the request's own (OpenAI) spelling.
"""

from __future__ import annotations

from typing import Any

from ..errors import (
    ContextLengthError,
    EngineError,
    GeneratorClosedError,
    InvalidParameterError,
    UnillmError,
    UnknownParameterError,
    UnsupportedParameterError,
)
from ..generator import InvalidPromptError


class APIError(Exception):
    """An error response: status, OpenAI error body and extra headers."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def from_unillm(exc: Exception, names: dict[str, str], prompt_param: str, *,
                preparing: bool = False) -> APIError:
    """The 400/500 for an error raised while preparing or running a request.

    `names` maps SamplingParams fields back to the field the client sent (``max_tokens`` may
    have come as ``max_completion_tokens``); `prompt_param` is ``prompt`` or ``messages``.
    """
    if isinstance(exc, ContextLengthError):
        param = prompt_param if exc.prompt_tokens >= exc.context_length else names.get(
            "max_tokens", "max_tokens")
        return bad_request(context_message(exc, prompt_param), param, "context_length_exceeded")
    if isinstance(exc, (InvalidParameterError, UnknownParameterError)):
        field = exc.field
        return bad_request(_rename(str(exc), field, names), names.get(field, field))
    if isinstance(exc, UnsupportedParameterError):
        field = exc.field
        return bad_request(_rename(str(exc), field, names), names.get(field, field),
                           "unsupported_parameter")
    if isinstance(exc, InvalidPromptError):
        return bad_request(str(exc), prompt_param)
    if isinstance(exc, GeneratorClosedError):
        return APIError(503, str(exc), type="server_error", code="engine_closed")
    if isinstance(exc, EngineError):
        return APIError(500, str(exc), type="server_error", code="engine_error")
    if isinstance(exc, UnillmError) and preparing:
        # Raised by `Generator.prepare` about this request's input, before any engine ran.
        return bad_request(str(exc), prompt_param)
    return APIError(500, f"{type(exc).__name__}: {exc}", type="server_error")


def context_message(exc: ContextLengthError, prompt_param: str) -> str:
    """OpenAI's wording, which clients match on (LiteLLM's ContextWindowExceededError looks
    for "This model's maximum context length is"), then unillm's own advice."""
    where = "messages" if prompt_param == "messages" else "prompt"
    total = exc.prompt_tokens + exc.max_tokens
    return (f"This model's maximum context length is {exc.context_length} tokens. However, you "
            f"requested {total} tokens ({exc.prompt_tokens} in the {where}, {exc.max_tokens} in "
            f"the completion). Please reduce the length of the {where} or completion. ({exc})")


def not_found(path: str) -> APIError:
    return APIError(404, f"no route {path!r} on this server; see /openapi.json",
                    code="not_found")


def method_not_allowed(method: str, path: str) -> APIError:
    return APIError(405, f"{method} is not allowed on {path!r}; see /openapi.json",
                    code="method_not_allowed")


def _rename(message: str, field: str, names: dict[str, str]) -> str:
    sent = names.get(field, field)
    if sent != field:
        return f"{sent}: {message}"
    return message
