"""A `structured` constraint in each server's own request fields, per server profile
(`_profiles.py`) and for TGI.

Only translations that keep unillm's meaning exactly are here:

- a JSON schema is sent as a schema (the server compiles it with its own grammar library);
  servers choose their JSON whitespace themselves (an engine setting, or always flexible), so
  only ``whitespace="flexible"`` is accepted (the planner refuses compact, the default, with
  that reason): what they write is then always a sentence of the constraint;
- a choice becomes the server's own choice field, or a grammar / regex that is exactly an
  alternation of the literal strings;
- a regex is sent where the server takes a regex; a Lark grammar (llguidance's dialect) only
  where the server reads that dialect, which no profile can promise (vLLM's server reads its
  backend's dialect, unknown to the client; llama.cpp reads GBNF; SGLang its EBNF).

`Sample.complete` is decided on the text the server returned (unillm/grammars.py).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import UnsupportedParameterError
from ..structured import Structured

REGEX_SPECIAL = frozenset("\\.^$|?*+()[]{}")


def regex_literal(text: str) -> str:
    """`text` as a regex matching exactly it: only the characters every dialect treats as
    operators are escaped (Rust's, Python's and JavaScript's regexes agree on these)."""
    return "".join("\\" + c if c in REGEX_SPECIAL else c for c in text)


def choice_regex(choices: tuple[str, ...]) -> str:
    return "(" + "|".join(regex_literal(c) for c in choices) + ")"


def gbnf_literal(text: str) -> str:
    """`text` as a GBNF string literal (llama.cpp's grammar format): quote, backslash and
    control characters escaped, everything else as UTF-8."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\x{ord(c):02X}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def choice_gbnf(choices: tuple[str, ...]) -> str:
    return "root ::= " + " | ".join(gbnf_literal(c) for c in choices)


def _schema(s: Structured) -> dict[str, Any]:
    return {} if s.json_schema is True else dict(s.json_schema or {})


def openai_response_format(s: Structured) -> dict[str, Any]:
    """OpenAI's chat `response_format` for a JSON schema (strict: the server enforces it)."""
    return {"response_format": {"type": "json_schema", "json_schema": {
        "name": "unillm", "schema": _schema(s), "strict": True}}}


def _chat_only(server: str, s: Structured, chat: bool) -> None:
    if not chat:
        raise UnsupportedParameterError(
            "openai", "structured", {s.kind: "..."},
            f"{server}'s completions endpoint has no field for a JSON schema (its chat "
            "endpoint has response_format): use chat, or an engine that constrains prompts")


def for_openai(s: Structured, chat: bool) -> dict[str, Any]:
    _chat_only("OpenAI's API", s, chat)
    return openai_response_format(s)


def for_vllm(s: Structured, chat: bool) -> dict[str, Any]:
    """vLLM's server: its `structured_outputs` field, on both endpoints."""
    if s.kind == "json_schema":
        return {"structured_outputs": {"json": _schema(s)}}
    if s.kind == "choice":
        return {"structured_outputs": {"choice": list(s.choice or ())}}
    return {"structured_outputs": {"regex": s.regex}}


def for_sglang(s: Structured, chat: bool) -> dict[str, Any]:
    """SGLang's server: `json_schema` (a JSON string) and `regex` in the body."""
    if s.kind == "json_schema":
        return {"json_schema": json.dumps(_schema(s))}
    if s.kind == "choice":
        return {"regex": choice_regex(s.choice or ())}
    return {"regex": s.regex}


def for_llama_server(s: Structured, chat: bool) -> dict[str, Any]:
    """llama.cpp's llama-server: `json_schema` (converted to its grammar by the server) or a
    GBNF `grammar`, on both endpoints."""
    if s.kind == "json_schema":
        return {"json_schema": _schema(s)}
    return {"grammar": choice_gbnf(s.choice or ())}


def for_llama_cpp_python(s: Structured, chat: bool) -> dict[str, Any]:
    """llama-cpp-python's server: a GBNF `grammar`, on both endpoints. Not a JSON schema: its
    converter (llama_cpp.llama_grammar) drops keywords such as minimum/maximum, so the output
    could break the schema (tests/structured/test_servers.py found an integer over its
    maximum)."""
    return {"grammar": choice_gbnf(s.choice or ())}


def for_tgi(s: Structured) -> dict[str, Any]:
    """TGI's `grammar` parameter: ``{"type": "json" | "regex", "value": ...}``."""
    if s.kind == "json_schema":
        return {"grammar": {"type": "json", "value": _schema(s)}}
    if s.kind == "choice":
        return {"grammar": {"type": "regex", "value": choice_regex(s.choice or ())}}
    return {"grammar": {"type": "regex", "value": s.regex}}


SERVER_WHITESPACE = ("the server chooses its JSON whitespace itself (a server setting, not a "
                     "request field), so compact JSON cannot be promised")


def check_compiles(s: Structured) -> None:
    """The constraint compiles with unillm's grammar engine (an unsupported JSON-schema
    keyword is named here, as on every engine), before any request is sent."""
    from ..grammars import BYTES, compile_constraint

    compile_constraint(s, BYTES)
