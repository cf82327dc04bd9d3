"""The ``--model`` argument every command takes: a path, a hub id, or ``test:PRESET``.

A mistyped preset (``test:llama-tinyy``) is the user's mistake, not a bug: it gets the CLI's
one-line error with the closest preset, before anything is built or loaded. Building a test
model needs torch and transformers; without them the error says which install command adds them,
instead of a ModuleNotFoundError from deep inside the builder.
"""

from __future__ import annotations

import difflib
import importlib.util

from .messages import fail

BUILDER_NEEDS = ("torch", "transformers", "tokenizers")
BUILDER_INSTALL = "pip install 'unillm[transformers]'"


def check_preset(preset: str, given: str | None = None, prefix: str = "") -> None:
    """Raise `typer.Exit` (after printing why) unless `preset` names a test model that can be
    built here. `given` is the argument as the user typed it, `prefix` what goes before a
    preset name there (``test:`` in ``--model test:llama-tiny``)."""
    from unillm.testing.models import PRESETS

    if preset not in PRESETS:
        close = difflib.get_close_matches(preset, PRESETS, n=1)
        hint = f"did you mean {prefix}{close[0]}? " if close else ""
        raise fail(f"{given or repr(preset)}: no such test model; {hint}"
                   f"presets: {', '.join(prefix + p for p in PRESETS)}")
    missing = [m for m in BUILDER_NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        raise fail(f"building test model {preset!r} needs {', '.join(missing)}, not installed: "
                   f"{BUILDER_INSTALL}")


def resolve_cli_model(model: str) -> str:
    """``test:PRESET`` -> the built test model's directory; anything else unchanged.

    Raises `typer.Exit` (after printing the error) for a preset that cannot be built."""
    from unillm.testing.models import TEST_MODEL_PREFIX, resolve_model

    if model.startswith(TEST_MODEL_PREFIX):
        check_preset(model[len(TEST_MODEL_PREFIX):], given=f"--model {model}",
                     prefix=TEST_MODEL_PREFIX)
    return resolve_model(model)
