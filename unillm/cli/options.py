"""Parsing ``key=value`` command-line arguments into typed values."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import typer


def parse_pairs(pairs: Iterable[str], what: str) -> dict[str, Any]:
    """``["temperature=0", "stop=[\\"\\\\n\\"]", "dtype=float32"]`` -> dict.

    Values are read as JSON when they parse (numbers, true/false, null, lists), else kept as
    strings, so ``stop=abc`` and ``dtype=float32`` need no quoting.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} {pair!r} is not of the form key=value")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out
