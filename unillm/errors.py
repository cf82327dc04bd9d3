"""Every error unillm raises, in one hierarchy.

Callers catch `UnillmError` for anything unillm-specific; the subclasses exist so that a server
can map each one to the right HTTP status and a user can tell "my input is wrong" (a
`ValueError` subclass) from "the engine broke" (`EngineError`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from pydantic import ValidationError


class UnillmError(Exception):
    """Base class of every error unillm raises on purpose."""


class InvalidParameterError(UnillmError, ValueError):
    """A `SamplingParams` field (or an engine option) has a value outside its allowed set.

    `field`, `value` and `allowed` say which, what and what would have been accepted, so a
    server can put them straight into a 400 response.
    """

    def __init__(self, field: str, value: object, allowed: str, *, owner: str = "SamplingParams"):
        self.field = field
        self.value = value
        self.allowed = allowed
        self.owner = owner
        super().__init__(f"{owner}.{field} = {value!r} is not allowed: {allowed}")


class UnknownParameterError(UnillmError, ValueError):
    """A field name that the schema does not have (typos such as `max_new_tokens`)."""

    def __init__(self, field: str, known: Iterable[str], *, owner: str = "SamplingParams"):
        import difflib

        self.field = field
        self.owner = owner
        self.known = sorted(known)
        close = difflib.get_close_matches(field, self.known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(
            f"{owner} has no field {field!r}.{hint} Allowed: {', '.join(self.known)}"
        )


class UnsupportedParameterError(UnillmError, ValueError):
    """The engine cannot honour this parameter and unillm cannot emulate it.

    Raised instead of silently ignoring the parameter: a result computed without it would not
    be what the caller asked for.
    """

    def __init__(self, engine: str, field: str, value: object = None, reason: str = "", *,
                 owner: str = "SamplingParams", message: str | None = None):
        self.engine = engine
        self.field = field
        self.value = value
        detail = f": {reason}" if reason else ""
        super().__init__(message or (
            f"engine {engine!r} cannot honour {owner}.{field} = {value!r}{detail}. "
            f"Leave {field} at its default or choose an engine that supports it."
        ))


class ContextLengthError(UnillmError, ValueError):
    """The prompt, or the prompt plus `max_tokens`, does not fit in the model's context."""

    def __init__(self, prompt_tokens: int, max_tokens: int, context_length: int):
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.context_length = context_length
        if prompt_tokens >= context_length:
            msg = (
                f"the prompt has {prompt_tokens} tokens but the model's context is "
                f"{context_length} tokens"
            )
        else:
            msg = (
                f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) = "
                f"{prompt_tokens + max_tokens} exceeds the model's context of {context_length} "
                f"tokens; lower max_tokens to at most {context_length - prompt_tokens}"
            )
        super().__init__(msg)


class InvalidPromptError(UnillmError, ValueError):
    """The prompt is empty, of a type unillm does not accept, or a prepared prompt run twice."""


class QuantizationMismatchError(UnillmError, ValueError):
    """The checkpoint is already quantized, and not the way the caller asked."""


class EngineNotFoundError(UnillmError, LookupError):
    """No engine of that name is registered; the message lists those that are."""


class EngineUnavailableError(UnillmError, ImportError):
    """The engine is known but its package is missing, or its plugin failed to load."""

    def __init__(self, engine: str, reason: str, install_hint: str | None = None):
        self.engine = engine
        self.reason = reason
        self.install_hint = install_hint
        hint = f" Install it with: {install_hint}" if install_hint else ""
        super().__init__(f"engine {engine!r} is not available: {reason}.{hint}")


class EngineError(UnillmError, RuntimeError):
    """The engine failed while loading or generating (its worker died, it raised, ...).

    The original exception is chained as `__cause__`; the calling process keeps running.
    """

    def __init__(self, engine: str, message: str):
        self.engine = engine
        super().__init__(f"engine {engine!r} failed: {message}")


class ServerError(EngineError):
    """An HTTP engine's server answered with an error status (after any retries)."""

    def __init__(self, engine: str, status: int, url: str, detail: str):
        self.status = status
        self.url = url
        self.detail = detail
        super().__init__(engine, f"HTTP {status} from {url}: {detail}")


class NoReplicaError(UnillmError, RuntimeError):
    """No Ray replica can take work (all failed and none came back in time)."""


class BatchError(EngineError):
    """Some prompts of a batch call failed (e.g. a replica died while running them); the others
    completed.

    `errors` maps each failed prompt's index (in the call's input order) to its `UnillmError`;
    `completions[i]` is prompt i's `Completion`, or None where it failed. Re-running only the
    failed prompts is ``[prompts[i] for i in err.errors]``.
    """

    def __init__(self, engine: str, errors: dict[int, UnillmError], completions: list):
        self.errors = dict(sorted(errors.items()))
        self.completions = completions
        failed = list(self.errors)
        first = self.errors[failed[0]]
        super().__init__(
            engine,
            f"{len(failed)} of {len(completions)} prompts failed (indices {failed}); the others "
            f"completed and are in .completions. First error: {first}",
        )


class GeneratorClosedError(UnillmError, RuntimeError):
    """The generator was closed; load a new one."""


class SaveNotSupportedError(UnillmError, NotImplementedError):
    """`Generator.save` on an engine (or a model configuration) that cannot be saved: the
    message says why, e.g. a quantization library whose models do not serialize."""

    def __init__(self, engine: str, reason: str):
        self.engine = engine
        self.reason = reason
        super().__init__(f"engine {engine!r} cannot save this model: {reason}")


class QueueFullError(UnillmError):
    """`unillm serve`'s queue is at its `max_queue`: the request is refused (a 429 with a
    Retry-After header), and the caller may try again after `retry_after` seconds."""

    def __init__(self, retry_after: int, depth: int):
        super().__init__(f"the server's queue is full ({depth} requests waiting); retry in "
                         f"{retry_after} s")
        self.retry_after = retry_after
        self.depth = depth


class WorkerError(UnillmError):
    """A bench or tune job failed in its worker process (the engine raised, or the process
    died); the message names the engine's own exception and the worker's last log lines."""


class MissingDependency(UnillmError):
    """An optional package that a bench command needs is not installed; the message names the
    install command."""


class PartialBatchFailure(Exception):
    """Raised by `Engine.generate` / `agenerate` when only some requests of a batch failed.

    Part of the engine contract, not an error a caller sees. An engine that runs a batch in
    several independent pieces (unillm's Ray replicas, an HTTP engine sending one request per
    prompt) raises this instead of a plain exception, so the requests that did complete are not
    thrown away: `results[i]` holds request i's `EngineResult`, or None where it failed, and
    `errors[i]` the reason. The caller gets a `BatchError` carrying the completed prompts'
    `Completion`s and each failed prompt's error.
    """

    def __init__(self, results: Sequence[Any], errors: Mapping[int, BaseException]):
        self.results = list(results)
        self.errors = dict(errors)
        first = next(iter(self.errors.values()), None)
        super().__init__(f"{len(self.errors)} of {len(self.results)} requests failed: {first}")


def as_engine_error(engine: str, exc: BaseException) -> UnillmError:
    """`exc` itself if it is unillm's own error, else an `EngineError` of `engine` chaining
    it: the one rule for what a failure inside an engine becomes for the caller."""
    if isinstance(exc, UnillmError):
        return exc
    wrapped = EngineError(engine, f"{type(exc).__name__}: {exc}")
    wrapped.__cause__ = exc
    return wrapped


def from_validation_error(
    exc: ValidationError, fields: Iterable[str], *, owner: str,
    allowed: Callable[[str, Mapping[str, Any]], str] | None = None,
) -> UnillmError:
    """One typed unillm error for pydantic's error list, naming the first bad field: the error
    a validator raised itself, `UnknownParameterError` for an unknown name (with a "did you
    mean"), else `InvalidParameterError` with what is allowed (`allowed(field, error)`, by
    default pydantic's message and the field's description, `fields` being the schema's
    ``model_fields``) and the other bad fields. Every schema (SamplingParams, engine
    options, quantization knobs) translates through here."""
    errors = exc.errors()
    first = errors[0]
    own = (first.get("ctx") or {}).get("error")
    if isinstance(own, UnillmError):  # a validator of the schema already named the problem
        return own
    field = str(first["loc"][0]) if first["loc"] else ""
    if first["type"] == "extra_forbidden":
        return UnknownParameterError(field, fields, owner=owner)
    if allowed is not None:
        text = allowed(field, first)
    else:  # pydantic's message, and the field's description when the schema has one
        text = str(first.get("msg", ""))
        description = getattr(fields.get(field), "description", None) \
            if isinstance(fields, Mapping) else None
        if description:
            text = f"{text} ({description})"
    err = InvalidParameterError(field, first.get("input"), text, owner=owner)
    others = sorted({str(e["loc"][0]) for e in errors[1:] if e["loc"]} - {field})
    if others:
        err.args = (f"{err.args[0]} (also invalid: {', '.join(others)})",)
    return err
