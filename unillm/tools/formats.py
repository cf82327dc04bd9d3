"""The tool-call formats unillm reads and writes: how a model family spells a call in text.

A format is data, not code: the marker that opens a call region, what closes each call, the
layout of the calls (one JSON object per tagged region, a JSON array, or bare JSON objects),
and the key holding the arguments. One parser (`parsing.ToolStreamParser`) reads every format
and one builder (`constraints`) writes its grammar, so reading and enforcing a format cannot
disagree.

- ``hermes`` (Hermes 2 Pro, Qwen 2/2.5/3, many fine-tunes): ``<tool_call>\\n{"name": ...,
  "arguments": {...}}\\n</tool_call>``, repeated for parallel calls, text allowed around them.
- ``llama3_json`` (Llama 3.1/3.2/3.3 JSON tool calling): the reply is ``{"name": ...,
  "parameters": {...}}`` (optionally after ``<|python_tag|>``), several separated by ``; ``.
- ``mistral`` (Mistral v3+ tokenizers): ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]``.
- ``response_template``: the tokenizer's own declared parser (transformers' ``response_template``,
  read with transformers' `ResponseParser`), see `template_format.py`.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidParameterError

Layout = Literal["tagged", "array", "json"]


@dataclass(frozen=True)
class ToolFormat:
    """One model family's tool-call syntax.

    - `open`: the text that starts tool calls (None: none; ``json`` layouts also start at a
      reply's first ``{``).
    - `close`: the text after each call (``tagged``), else "".
    - `layout`: ``tagged`` (open, one object, close; repeated, text around), ``array`` (open,
      then a JSON array of call objects), ``json`` (call objects separated by `separator`,
      as the whole reply).
    - `separator`: between two calls, as the grammar writes it (the parser accepts any
      whitespace around it).
    - `arguments_key`: the key the grammar writes; the parser accepts any of `argument_keys`.
    - `template_markers`: text in a chat template that identifies the format.
    - `id_alphabet`/`id_length`/`id_prefix`: call ids as the family's templates expect them
      (Mistral's templates refuse ids that are not 9 letters or digits).
    """

    name: str
    title: str
    open: str | None
    close: str
    layout: Layout
    separator: str
    arguments_key: str
    argument_keys: tuple[str, ...]
    template_markers: tuple[str, ...]
    open_suffix: str = ""  # written after `open` by the grammar (the parser skips whitespace)
    close_prefix: str = ""  # written before `close`
    id_prefix: str = "call_"
    id_length: int = 24
    id_alphabet: str = string.ascii_letters + string.digits

    def call_id(self, nonce: str, sample: int, call: int) -> str:
        """The id of call `call` of sample `sample`: a digest of the prompt's random `nonce`
        and both indices, so a stream and its final result name every call alike."""
        digest = int.from_bytes(hashlib.sha256(f"{nonce}:{sample}:{call}".encode()).digest(),
                                "big")
        chars = []
        for _ in range(self.id_length):
            digest, k = divmod(digest, len(self.id_alphabet))
            chars.append(self.id_alphabet[k])
        return self.id_prefix + "".join(chars)


HERMES = ToolFormat(
    "hermes", "Hermes / Qwen <tool_call> JSON", "<tool_call>", "</tool_call>", "tagged", "\n",
    "arguments", ("arguments", "parameters"), ("<tool_call>",), open_suffix="\n",
    close_prefix="\n",
)
LLAMA3_JSON = ToolFormat(
    "llama3_json", "Llama 3.x JSON tool calling", "<|python_tag|>", "", "json", "; ",
    "parameters", ("parameters", "arguments"),
    ("<|python_tag|>", '"parameters": dictionary of argument name'),
)
MISTRAL = ToolFormat(
    "mistral", "Mistral [TOOL_CALLS]", "[TOOL_CALLS]", "", "array", ", ", "arguments",
    ("arguments", "parameters"), ("[TOOL_CALLS]",), id_prefix="", id_length=9,
)

def new_nonce() -> str:
    """A prompt's random id seed (ids must be unique, not secret; 64 bits)."""
    return secrets.token_hex(8)


FORMATS: dict[str, ToolFormat] = {f.name: f for f in (HERMES, LLAMA3_JSON, MISTRAL)}
ALIASES = {"qwen": "hermes", "qwen2": "hermes", "qwen3": "hermes", "llama3": "llama3_json",
           "llama": "llama3_json"}
RESPONSE_TEMPLATE = "response_template"
PARSER_NAMES = (*FORMATS, RESPONSE_TEMPLATE)


def check_parser_name(name: str) -> str:
    """The canonical format name for `name` (aliases resolved), or an error listing them."""
    if not isinstance(name, str) or (name not in PARSER_NAMES and name not in ALIASES):
        raise InvalidParameterError(
            "tool_parser", name, f"one of {', '.join(PARSER_NAMES)} (aliases: "
            f"{', '.join(f'{a}={b}' for a, b in ALIASES.items())})", owner="unillm")
    return ALIASES.get(name, name)
