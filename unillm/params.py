"""`SamplingParams`: one schema whose semantics are unillm's own, whatever the engine.

Engines disagree about defaults (CTranslate2 is greedy unless told otherwise, llama.cpp samples
with top_k 40 and min_p 0.05, vLLM stops after 16 tokens, transformers fills unset fields from
the checkpoint's `generation_config.json`). unillm's defaults are the ones written here, every
engine is sent them explicitly, and the bounds below are the single source of both the
validation messages and the documentation table (`parameter_table`).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import annotated_types
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from .errors import InvalidParameterError, from_validation_error
from .structured import Structured, as_structured

SEED_MAX = 2**32 - 1  # the largest seed every engine accepts (llama.cpp's is 32-bit)
TOP_K_MAX = 2**31 - 1
"""The largest `top_k` (engines hold it in 32 bits). Any k at least the vocabulary size keeps
every token, which is what `top_k=None` means, so nothing is lost."""

GREEDY_EPS = 1e-5
"""Below this, `temperature` and `top_p` mean greedy decoding (vLLM's `_SAMPLING_EPS`).

Dividing logits by a temperature of 1e-40 overflows float32 (transformers then raises on the
inf/nan probabilities, CTranslate2 returns empty text), and a top_p of 5e-324 is 0 in float32
(CTranslate2 refuses it). Both limits mean the same as greedy decoding: a temperature -> 0
concentrates all probability on the argmax, and a top_p smaller than the most likely token's
probability (at least 1/vocabulary size) keeps only that token. So such values are made
greedy here, once, for every engine, instead of reaching engines that compute in float32.
"""

REPETITION_PENALTY_MIN = 1e-5
"""The smallest repetition penalty sent to an engine; smaller values are raised to it.

A penalty divides positive logits; 5e-324 is 0 in float32 (a division by zero in
transformers, refused by CTranslate2). From 1e-5 down the penalty already makes every
repeated token win outright, so raising it changes no choice of token.
"""


def _as_tuple(value: Any) -> Any:
    """Accept a single string (or id) where a sequence is expected, as the OpenAI API does."""
    if value is None:
        return ()
    if isinstance(value, (str, int)):
        return (value,)
    if isinstance(value, list):
        return tuple(value)
    return value


StopStrings = Annotated[
    tuple[Annotated[str, annotated_types.MinLen(1)], ...], BeforeValidator(_as_tuple)
]
TokenIds = Annotated[tuple[Annotated[int, annotated_types.Ge(0)], ...], BeforeValidator(_as_tuple)]

LOGIT_BIAS_LIMIT = 100.0
"""The largest bias, either sign (OpenAI's and vLLM's range): beyond it a bias is refused, not
clamped, so a value never means something other than what was sent."""


class TokenBias(dict):
    """`SamplingParams.logit_bias`: token id -> bias, read-only and hashable, so parameters
    stay immutable (plans and batches are keyed by them)."""

    __slots__ = ()

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt whole: pickle's default for a dict subclass fills it item by item, which
        # the read-only mapping refuses (Ray replicas pickle parameters).
        return (TokenBias, (dict(self),))

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("SamplingParams.logit_bias is read-only: use params.replace(...)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]


def _bias_keys(value: Any) -> Any:
    """None or {} -> None (no bias); token ids may come as strings of digits (JSON's keys,
    OpenAI's spelling)."""
    if value is None or (isinstance(value, dict) and not value):
        return None
    if isinstance(value, dict):
        return {int(k) if isinstance(k, str) and k.strip().isdigit() else k: v
                for k, v in value.items()}
    return value


def _as_bias(value: Any) -> Any:
    return TokenBias(value) if isinstance(value, dict) else value


def _nonempty_ids(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and not value:
        raise InvalidParameterError("allowed_token_ids", value, allowed_values("allowed_token_ids"))
    return _as_tuple(value) if value is not None else None


def _words(value: Any) -> Any:
    value = _as_tuple(value)
    if isinstance(value, tuple) and any(isinstance(w, str) and not w.strip() for w in value):
        raise InvalidParameterError("bad_words", value, allowed_values("bad_words"))
    return value


LogitBias = Annotated[
    dict[Annotated[int, annotated_types.Ge(0)],
         Annotated[float, annotated_types.Ge(-LOGIT_BIAS_LIMIT),
                   annotated_types.Le(LOGIT_BIAS_LIMIT)]] | None,
    BeforeValidator(_bias_keys), AfterValidator(_as_bias),
]
AllowedIds = Annotated[tuple[Annotated[int, annotated_types.Ge(0)], ...] | None,
                       BeforeValidator(_nonempty_ids)]
BadWords = Annotated[tuple[Annotated[str, annotated_types.MinLen(1)], ...],
                     BeforeValidator(_words)]


class SamplingParams(BaseModel):
    """How to generate: one validated, immutable set of parameters for every engine.

    Semantics (the same on every engine):

    - `temperature == 0` means greedy decoding; `top_p`, `top_k` and `min_p` are then unused.
    - `top_k=None` means no top-k filtering (never 0 or -1).
    - generation ends at the first of: `max_tokens` tokens, the model's end-of-sequence token
      (unless `ignore_eos`), a token in `stop_token_ids`, or a `stop` string. No stop condition
      fires before `min_tokens` tokens have been generated.
    - a `stop` string is cut from the text, together with everything after it; the token that
      completed it is the last token kept in `token_ids`.
    - `n > 1` returns n samples of the same prompt. With `seed`, the result is reproducible for
      the same engine, model, prompt and parameters.

    - numerically safe on every engine: a `temperature` or `top_p` below `GREEDY_EPS` (1e-5)
      is greedy decoding (stored as ``temperature=0, top_p=1``), and a `repetition_penalty`
      below `REPETITION_PENALTY_MIN` is raised to it; see those constants for why.

    An out-of-range value raises `InvalidParameterError` naming the field, the value and the
    allowed range; an unknown field raises `UnknownParameterError`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    max_tokens: int = Field(256, ge=1, description="Most tokens to generate per sample.")
    temperature: float = Field(
        1.0, ge=0.0, le=100.0, allow_inf_nan=False,
        description="Softmax temperature; 0 means greedy (argmax) decoding, and so does any "
        "value below 1e-5 (stored as 0).",
    )
    top_p: float = Field(
        1.0, gt=0.0, le=1.0, description="Nucleus sampling: keep the smallest set of tokens whose "
        "probability reaches top_p; 1 means off; below 1e-5 it keeps only the most likely token, "
        "which is greedy decoding (stored as temperature 0, top_p 1).",
    )
    top_k: int | None = Field(
        None, ge=1, le=TOP_K_MAX, description="Keep only the k most likely tokens (k at least "
        "the vocabulary size keeps all); None means off."
    )
    min_p: float = Field(
        0.0, ge=0.0, le=1.0, description="Drop tokens whose probability is below min_p times the "
        "most likely token's; 0 means off.",
    )
    repetition_penalty: float = Field(
        1.0, gt=0.0, le=10.0, allow_inf_nan=False,
        description="Multiplicative penalty on tokens already in prompt or output (CTRL paper, "
        "as transformers and vLLM apply it); 1 means off; values below 1e-5 are raised to 1e-5.",
    )
    presence_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, description="Subtracted from the logit of every token already "
        "generated (OpenAI's definition); 0 means off.",
    )
    frequency_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, description="Subtracted from a token's logit once per time it was "
        "already generated (OpenAI's definition); 0 means off.",
    )
    stop: StopStrings = Field(
        (), description="Strings that end generation; the text is cut before the first match."
    )
    stop_token_ids: TokenIds = Field(
        (), description="Token ids that end generation (in addition to end-of-sequence)."
    )
    seed: int | None = Field(
        None, ge=0, le=SEED_MAX, description="Random seed for sampling; None means unseeded."
    )
    n: int = Field(1, ge=1, le=128, description="Number of samples per prompt.")
    min_tokens: int = Field(
        0, ge=0, description="No stop condition (eos, stop ids, stop strings) fires before this "
        "many tokens; at most max_tokens.",
    )
    ignore_eos: bool = Field(
        False, description="Keep generating past the end-of-sequence token (fixed-length runs)."
    )
    skip_special_tokens: bool = Field(
        True, description="Leave special tokens (end-of-sequence, chat-template markers) out of "
        "the text; false keeps them, decoded as the tokenizer writes them (vLLM's definition). "
        "A terminating end-of-sequence or stop token is never part of the text.",
    )
    logprobs: int | None = Field(
        None, ge=0, le=20, description="Return the log-probability of each generated token and "
        "of this many top alternatives; None means none.",
    )
    prompt_logprobs: int | None = Field(
        None, ge=0, le=20, description="Also return the log-probability of each prompt token "
        "(None for the first) and of this many top alternatives (vLLM's prompt_logprobs); None "
        "means none.",
    )
    structured: Annotated[Structured | None, BeforeValidator(as_structured)] = Field(
        None, description="Constrain the text to a JSON schema, a regex, one of several "
        "choices or a grammar (docs/structured.md); None means unconstrained.",
    )
    # Token-level rules, with vLLM's names and meanings (docs/sampling.md, "Token rules"):
    logit_bias: LogitBias = Field(
        None, description="Token id -> bias (-100..100) added to that token's logit before "
        "penalties, temperature and filters (OpenAI's and vLLM's definition); -100 in practice "
        "bans a token, +100 forces it. None means no bias.",
    )
    allowed_token_ids: AllowedIds = Field(
        None, description="Only these token ids may be generated (end-of-sequence included only "
        "if listed); None means every token.",
    )
    bad_words: BadWords = Field(
        (), description="Strings that must not be generated as the model's own tokenization "
        "writes them (vLLM's definition): each is tokenized with and without a leading space, "
        "and the last token of such a sequence is banned wherever the tokens generated so far "
        "end with the rest of it.",
    )

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _translate(exc) from None

    @model_validator(mode="before")
    @classmethod
    def _numerically_safe(cls, data: Any) -> Any:
        """The one place where tiny values become what they mean (see `GREEDY_EPS`)."""
        if not isinstance(data, dict):
            return data

        def tiny(name: str, limit: float) -> bool:
            value = data.get(name)
            return (isinstance(value, float) and math.isfinite(value)
                    and 0.0 < value < limit)

        if tiny("temperature", GREEDY_EPS) or tiny("top_p", GREEDY_EPS):
            data = {**data, "temperature": 0.0, "top_p": 1.0}
        if tiny("repetition_penalty", REPETITION_PENALTY_MIN):
            data = {**data, "repetition_penalty": REPETITION_PENALTY_MIN}
        return data

    @model_validator(mode="after")
    def _min_tokens_within_max(self) -> SamplingParams:
        if self.min_tokens > self.max_tokens:
            raise InvalidParameterError("min_tokens", self.min_tokens, allowed_values("min_tokens"))
        return self

    @property
    def is_greedy(self) -> bool:
        """True when decoding is argmax (temperature 0): sampling knobs do not apply."""
        return self.temperature == 0.0

    def replace(self, **changes: Any) -> SamplingParams:
        """A copy with `changes` applied and validated (pydantic's model_copy skips validation)."""
        return SamplingParams(**{**self.model_dump(), **changes})

    def non_default_fields(self) -> dict[str, Any]:
        """The fields whose values differ from unillm's defaults: what an engine must honour."""
        return {
            name: getattr(self, name)
            for name, info in type(self).model_fields.items()
            if getattr(self, name) != info.default
        }


def allowed_values(name: str) -> str:
    """The allowed range of a field, in words, derived from its constraints."""
    info = SamplingParams.model_fields[name]
    if name in ("stop",):
        return "a string or a list of non-empty strings"
    if name == "stop_token_ids":
        return "a token id or a list of token ids, each >= 0"
    if name in ("ignore_eos", "skip_special_tokens"):
        return "true or false"
    if name == "min_tokens":
        return "an integer with 0 <= min_tokens <= max_tokens"
    if name == "logit_bias":
        return (f"None, or a mapping of token id (an integer >= 0, or its decimal string) to a "
                f"finite number with -{LOGIT_BIAS_LIMIT:g} <= bias <= {LOGIT_BIAS_LIMIT:g}")
    if name == "allowed_token_ids":
        return "None, or a non-empty list of token ids, each >= 0"
    if name == "bad_words":
        return "a string or a list of strings, each with at least one non-space character"
    if name == "structured":
        return ("None, or a Structured (or dict) with exactly one of json_schema, regex, "
                "choice, grammar")
    lower = upper = None
    lower_op = upper_op = ""
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            lower, lower_op = meta.ge, "<="
        elif isinstance(meta, annotated_types.Gt):
            lower, lower_op = meta.gt, "<"
        elif isinstance(meta, annotated_types.Le):
            upper, upper_op = meta.le, "<="
        elif isinstance(meta, annotated_types.Lt):
            upper, upper_op = meta.lt, "<"
    kind = "an integer" if info.annotation in (int, int | None) else "a finite number"
    parts = []
    if lower is not None:
        parts.append(f"{lower} {lower_op} ")
    parts.append(name)
    if upper is not None:
        parts.append(f" {upper_op} {upper}")
    text = f"{kind} with {''.join(parts)}" if (lower is not None or upper is not None) else kind
    if info.default is None:
        text += f", or None ({'off' if name != 'seed' else 'unseeded'})"
    if name == "top_k":
        text += "; unillm does not use 0 or -1 to mean off"
    return text


def _translate(exc: ValidationError) -> Exception:
    """Pydantic's error list -> one typed unillm error naming the first bad field."""
    return from_validation_error(exc, SamplingParams.model_fields, owner="SamplingParams",
                                 allowed=lambda field, _error: allowed_values(field))


def parameter_table() -> list[dict[str, str]]:
    """Rows for the documentation: field, unillm's default, allowed values, meaning."""
    rows = []
    for name, info in SamplingParams.model_fields.items():
        default = info.default
        shown = "()" if default == () else repr(default)
        rows.append(
            {
                "field": name,
                "default": shown,
                "allowed": allowed_values(name),
                "meaning": info.description or "",
            }
        )
    return rows
