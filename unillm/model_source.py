"""Is a model argument a local path that does not exist?

Engines try a string they cannot find on disk as a hub id, so ``/no/such/model`` came back as
the hub's "Repo id must be in the form 'repo_name' or 'namespace/repo_name'", and CTranslate2
started converting (and took its lock) first. `unillm.load` asks this module before an engine
sees the argument, and says that the path does not exist.

Only what cannot be anything but a path is checked, so hub ids (``gpt2``, ``org/name``), URLs
(``HF://mlc-ai/...``) and a server's model names still reach the engine untouched: an absolute
path, one that starts with ``.`` or ``~``, or one with more than one ``/`` (a hub id has at most
one).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InvalidParameterError


def looks_like_path(model: str) -> bool:
    if "://" in model:
        return False
    return (os.path.isabs(model) or model.startswith((".", "~")) or model.count("/") >= 2
            or (os.sep != "/" and os.sep in model))


def check_local_model(model: str, *, owner: str = "unillm.load") -> None:
    """Raise `InvalidParameterError` naming the path when `model` is a path that is not there."""
    if not looks_like_path(model):
        return
    path = Path(model).expanduser()
    if path.exists():
        return
    parent = next((p for p in path.parents if p.exists()), None)
    where = ""
    if parent is not None and parent != Path(path.anchor) and parent != Path("."):
        where = f" ({parent} exists, {path.relative_to(parent)} does not)"
    raise InvalidParameterError(
        "model", model,
        f"the path does not exist{where}. Give a model directory (config.json and weights), a "
        ".gguf file, a hub id such as 'org/name', or test:llama-tiny for a locally built test "
        "model (unillm.testing.build_test_model)",
        owner=owner,
    )
