"""`Structured`: what a sample must look like (a JSON schema, a regex, a list of choices, or a
grammar), with one meaning on every engine.

The semantics, written once (docs/structured.md says the same):

- The sample's text, from its first character to its end, is one string of the constraint's
  language: a JSON value valid against `json_schema`, a full match of `regex`, exactly one of
  `choice`, or a sentence of `grammar` (llguidance's Lark dialect).
- JSON is compact by default: no whitespace outside strings (``{"a":1}``), so output is short
  and the same on every engine; ``whitespace="flexible"`` allows JSON's whitespace anywhere it
  is legal.
- The sample ends as soon as the constraint is complete and cannot go on (finish_reason
  ``stop``); where it could go on (``[a-z]+``), the model chooses, and ends with its
  end-of-sequence token. At `max_tokens` the sample ends with finish_reason ``length`` and its
  text may be an incomplete prefix: `Sample.complete` says whether it is a full match.
- `stop` strings still apply and cut the text (the result is then a prefix); `ignore_eos` and
  `min_tokens` are refused with a constraint (they would force tokens past its end).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InvalidParameterError, from_validation_error

KINDS = ("json_schema", "regex", "choice", "grammar")


class Structured(BaseModel):
    """One constraint on a sample's text: exactly one of `json_schema`, `regex`, `choice`,
    `grammar`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    json_schema: dict[str, Any] | bool | None = Field(
        None, description="a JSON Schema (draft 2020-12 subset; see docs/structured.md) the "
        "output must validate against; true or {} means any JSON value")
    regex: str | None = Field(None, min_length=1,
                              description="a regular expression the whole output must match")
    choice: tuple[str, ...] | None = Field(None, min_length=1,
                                           description="the output is exactly one of these")
    grammar: str | None = Field(None, min_length=1,
                                description="a Lark grammar (llguidance dialect, start rule "
                                "`start`) the output must be a sentence of")
    whitespace: Literal["compact", "flexible"] = Field(
        "compact", description="JSON only: compact allows no whitespace outside strings")

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise from_validation_error(exc, Structured.model_fields, owner="Structured") from None

    @field_validator("json_schema", mode="before")
    @classmethod
    def _parse_schema(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise InvalidParameterError("json_schema", value[:80],
                                            f"a JSON object (not valid JSON: {exc})",
                                            owner="Structured") from None
        return value

    @field_validator("choice", mode="before")
    @classmethod
    def _choices(cls, value: Any) -> Any:
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(value, tuple) and any(not isinstance(c, str) or not c for c in value):
            raise InvalidParameterError("choice", value, "non-empty strings", owner="Structured")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Structured:
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise InvalidParameterError(
                "structured", {k: getattr(self, k) for k in given} or None,
                f"exactly one of {', '.join(KINDS)} (got {len(given)})", owner="Structured")
        if self.whitespace != "compact" and self.kind != "json_schema":
            raise InvalidParameterError("whitespace", self.whitespace,
                                        "'compact' unless json_schema is given", owner="Structured")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def key(self) -> str:
        """A canonical text of the constraint: equal constraints compile once."""
        return json.dumps(self.model_dump(exclude_none=True), sort_keys=True)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Structured) and self.key == other.key


def as_structured(value: Any) -> Structured | None:
    """`Structured` from itself, a dict of its fields, or None."""
    if value is None or isinstance(value, Structured):
        return value
    if isinstance(value, dict):
        return Structured(**value)
    raise InvalidParameterError("structured", value,
                                "a Structured, a dict with one of json_schema, regex, choice, "
                                "grammar, or None")
