"""The conformance kit on examples/minimal_engine.py: what a plugin's own tests hold.

A plugin package puts the class below in its tests (its installed entry point registers the
engine; here the example registers it by hand) and runs pytest. This script runs the kit:

    python examples/minimal_engine_test.py      # or: pytest examples/minimal_engine_test.py

Checks the engine does not declare (min_tokens, penalties, logprobs...) are skipped with the
reason; the kit also checks that they are refused with UnsupportedParameterError.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import unillm
from unillm.testing.conformance import EngineConformance

sys.path.insert(0, str(Path(__file__).resolve().parent))
import minimal_engine  # noqa: E402

if "minimal" not in {info.name for info in unillm.engines()}:
    unillm.register_plugin(minimal_engine, name="minimal-engine")


class TestMinimalEngine(EngineConformance):
    engine = "minimal"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider", "-rs"]))
