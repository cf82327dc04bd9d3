"""Tool calls enforced by unillm's constraint machinery: a grammar from the tools' schemas.

`tool_grammar` writes one Lark grammar (llguidance's dialect, the `Structured.grammar` every
constraining engine runs) in the model's own format: the format's markers around call objects
``{"name": "<a tool>", "<arguments key>": <arguments>}``, whose arguments are the tool's
parameter schema, inlined with ``%json`` (each tool's schema compiles on its own, so its
``$ref``/``$defs`` resolve as written). So:

- ``required`` / a named tool: the reply is one call (or, with parallel calls, several) and
  nothing else; every call parses and its arguments validate against the tool's schema.
- ``auto``: free text until the format's marker appears, then a valid call (llguidance's lazy
  lexemes: the trigger is the marker, written as text or as one special token); formats whose
  calls open with bare JSON (Llama 3) allow any reply that does not start with ``{``. Before
  the marker nothing is constrained: greedy tokens are those of the same call without tools'
  grammar (`ANY`).

Objects in a tool's schema that list `properties` but do not say `additionalProperties` are
closed (as OpenAI's strict mode requires): a call then holds only arguments the tool declares,
and still validates against the schema as given. JSON is written with ``", "`` and ``": "``,
the separators models see in their templates (`tojson`) and training data.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any

from .formats import ToolFormat
from .request import FunctionTool, ToolRequest

JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SUBSCHEMAS = ("items", "additionalProperties", "not", "contains", "if", "then", "else")

SpecialId = Callable[[str], "int | None"]

ANY = r"ANY: /(?s:.*)/ | ~/(?s:.*)/"
"""Free text, as the model would write it unconstrained: any text, and (the complement of
valid UTF-8) any byte sequence, so that before a tool-call marker ``auto`` changes nothing,
not even a weak model's broken UTF-8."""


def closed(schema: Any) -> Any:
    """A copy of `schema` whose objects with `properties` and no `additionalProperties` are
    closed. Objects combined with `allOf` are left as they are, and so are its branches
    (closing either would reject the other's properties)."""
    if not isinstance(schema, Mapping):
        return schema
    out = {k: v for k, v in schema.items()}
    if "properties" in out and not {"additionalProperties", "patternProperties", "allOf",
                                    "unevaluatedProperties"} & set(out):
        out["additionalProperties"] = False
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [closed(s) for s in out[key]]
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), Mapping):
            out[key] = {name: closed(s) for name, s in out[key].items()}
    for key in _SUBSCHEMAS:
        if isinstance(out.get(key), Mapping):
            out[key] = closed(out[key])
    return out


def arguments_schema(tool: FunctionTool) -> dict[str, Any]:
    schema = closed(copy.deepcopy(tool.parameters)) or {"type": "object"}
    schema.setdefault("type", "object")
    schema["x-guidance"] = dict(JSON_STYLE)
    return schema


def _literal(text: str, special: SpecialId) -> str:
    """`text` as a grammar item: the special token itself (``<[id]>``) where the tokenizer has
    one for exactly this text, else the string."""
    token = special(text)
    return f"<[{token}]>" if token is not None else json.dumps(text)


def _bodies(fmt: ToolFormat, tools: tuple[FunctionTool, ...]) -> list[str]:
    rules = ["body: " + " | ".join(f"body_{i}" for i in range(len(tools)))]
    for i, tool in enumerate(tools):
        head = json.dumps(f'{{"name": {json.dumps(tool.name)}, "{fmt.arguments_key}": ')
        rules.append(f'body_{i}: {head} args_{i} "}}"')
        rules.append(f"args_{i}: %json {json.dumps(arguments_schema(tool), ensure_ascii=False)}")
    return rules


def tool_grammar(fmt: ToolFormat, request: ToolRequest, special: SpecialId) -> str:
    """The Lark grammar for `request` in `fmt` (`request.choice` ``auto``, ``required`` or
    ``function``)."""
    lazy = request.choice == "auto"
    many = request.parallel and request.function is None
    rules = ["%llguidance {}"]
    opened = _literal(fmt.open, special) if fmt.open else ""
    special_open = fmt.open is not None and special(fmt.open) is not None
    if fmt.layout == "tagged":
        suffix = f" {json.dumps(fmt.open_suffix)}" if fmt.open_suffix else ""
        prefix = f"{json.dumps(fmt.close_prefix)} " if fmt.close_prefix else ""
        close = _literal(fmt.close, special)
        rest = f"{suffix} body {prefix}{close}"
        if not lazy:
            rules.append(f"call: {opened}{rest}")
            sep = json.dumps(fmt.separator)
            rules.append(f"start: call ({sep} call)*" if many else "start: call")
        else:
            rules += _lazy_trigger(opened, fmt.open or "", special_open)
            rules.append(f"tag: trigger{rest}")
            rules.append("start: tag* TEXT" if many else "start: TEXT | tag")
    elif fmt.layout == "array":
        sep = json.dumps(fmt.separator)
        items = f'"[" body ({sep} body)* "]"' if many else '"[" body "]"'
        if not lazy:
            rules.append(f"start: {opened} {items}")
        else:
            rules += _lazy_trigger(opened, fmt.open or "", special_open)
            rules.append(f"start: TEXT | trigger {items}")
    else:  # json: the reply is the calls
        sep = json.dumps(fmt.separator)
        calls = f"body ({sep} body)*" if many else "body"
        if not lazy:
            rules.append(f"start: {calls}")
        else:
            rules += [ANY, "TEXT: (/[^{]/ ANY)?", f"start: TEXT | {calls}"]
    rules += _bodies(fmt, request.offered)
    return "\n".join(rules) + "\n"


def _lazy_trigger(opened: str, marker: str, special_open: bool) -> list[str]:
    """Free text up to the marker: a lazy lexeme ending in it (a special-token marker is its
    own token, so plain text followed by the token does)."""
    rules = [ANY, "TEXT: ANY"]
    if special_open:
        rules.append(f"trigger: TEXT {opened}")
    else:
        rules.append(f"trigger[lazy]: TEXT {json.dumps(marker)}")
    return rules
