"""Every error unillm raises, in one hierarchy.

Callers catch `UnillmError` for anything unillm-specific; the subclasses exist so that a server
can map each one to the right HTTP status and a user can tell "my input is wrong" (a
`ValueError` subclass) from "the engine broke" (`EngineError`).
"""

from __future__ import annotations

from collections.abc import Iterable


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

    def __init__(self, engine: str, field: str, value: object = None, reason: str = ""):
        self.engine = engine
        self.field = field
        self.value = value
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"engine {engine!r} cannot honour SamplingParams.{field} = {value!r}{detail}. "
            f"Leave {field} at its default or choose an engine that supports it."
        )


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
