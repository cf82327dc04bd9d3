"""Where the examples get their model: $UNILLM_EXAMPLE_MODEL if set (a path or hub id of a real
model), else a tiny model built locally (no download), so every example runs offline."""

from __future__ import annotations

import os


def example_model(default: str = "test:llama-tiny") -> str:
    """$UNILLM_EXAMPLE_MODEL, else the test model `default` (``test:PRESET``)."""
    from unillm.testing import resolve_model

    return resolve_model(os.environ.get("UNILLM_EXAMPLE_MODEL", default))
