"""What one bench contestant is: an engine, its load options, and a label for tables and plots.

On the command line a contestant is ``NAME[:KEY=VALUE]...``, e.g. ``transformers``,
``ctranslate2:compute_type=int8`` or ``transformers:dtype=bfloat16:label=hf-bf16``.
Special keys: ``label`` (the name shown in results), ``model`` (a model for this engine only,
e.g. a .gguf file where the others load a directory) and ``python`` (this contestant's worker
runs with another environment's interpreter: for an engine that cannot share an environment
with the others, like vLLM's CPU build, which pins its own torch and transformers). Values are
read as JSON when they parse (numbers, true/false, null), else kept as strings; a dotted key
sets a nested option (``gptq:quantization.method=gptq:quantization.group_size=32``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def parse_value(raw: str) -> Any:
    """``"2"`` -> 2, ``"true"`` -> True, ``"int8"`` -> "int8"."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _set_option(options: dict[str, Any], key: str, value: Any, text: str) -> None:
    """``quantization.group_size=32`` sets ``options["quantization"]["group_size"]``: nested
    options without JSON objects, whose ``:`` and ``,`` the spec syntax uses itself."""
    *parents, leaf = key.split(".")
    where = options
    for part in parents:
        where = where.setdefault(part, {})
        if not isinstance(where, dict):
            raise ValueError(f"engine spec {text!r}: {part!r} is given both a value and "
                             f"nested keys ({key!r})")
    if isinstance(where.get(leaf), dict):
        raise ValueError(f"engine spec {text!r}: {key!r} is given both a value and nested keys")
    where[leaf] = value


@dataclass(frozen=True)
class EngineSpec:
    """An engine name, the options it is loaded with, and how results name it."""

    engine: str
    options: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    model: str | None = None
    python: str | None = None

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.default_label())

    def default_label(self) -> str:
        if not self.options:
            return self.engine
        parts = [f"{k}={v}" for k, v in self.options.items()]
        return f"{self.engine}:{':'.join(parts)}"

    @classmethod
    def parse(cls, text: str) -> EngineSpec:
        name, *pairs = text.strip().split(":")
        if not name:
            raise ValueError(f"engine spec {text!r} has no engine name (form: NAME[:KEY=VALUE]...)")
        options: dict[str, Any] = {}
        label = ""
        model = None
        python = None
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            if not sep or not key:
                raise ValueError(
                    f"engine spec {text!r}: {pair!r} is not KEY=VALUE (form: NAME[:KEY=VALUE]...)"
                )
            if key == "label":
                label = raw
            elif key == "model":
                model = raw
            elif key == "python":
                python = raw
            else:
                _set_option(options, key, parse_value(raw), text)
        return cls(name.lower(), options, label, model, python)

    @classmethod
    def parse_list(cls, text: str) -> list[EngineSpec]:
        """A comma-separated list of specs; labels must be unique."""
        specs = [cls.parse(part) for part in text.split(",") if part.strip()]
        labels = [s.label for s in specs]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"engine labels must be unique; repeated: {', '.join(dupes)} "
                             "(add :label=NAME to tell them apart)")
        return specs

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "engine": self.engine, "options": dict(self.options),
                "model": self.model, "python": self.python}


def installed_local_engines() -> list[EngineSpec]:
    """Every installed engine that runs a local model (HTTP engines need a server), with no
    options: what ``--engines`` means when it is left out."""
    import unillm

    found = []
    for info in unillm.engines():
        if info.status == "installed" and info.engine_class is not None and info.engine_class.local:
            found.append(EngineSpec(info.name))
    return sorted(found, key=lambda s: (s.engine != "transformers", s.engine))
