"""The structured-output tests need the grammar engine (llguidance) and an independent
validator (jsonschema): where CI requires any engine, a missing one fails the run instead of
skipping every test here quietly."""

from __future__ import annotations

import importlib.util

import pytest

from ..conftest import REQUIRED_ENGINES

LIBRARIES = {"llguidance": "the grammar engine (pip install 'unillm[structured]')",
             "jsonschema": "the validator these tests check outputs with (pip install "
                           "'unillm[test]')"}


@pytest.fixture(autouse=True, scope="session")
def structured_libraries() -> None:
    missing = [f"{name}: {why}" for name, why in LIBRARIES.items()
               if importlib.util.find_spec(name) is None]
    if not missing:
        return
    reason = "not installed: " + "; ".join(missing)
    if REQUIRED_ENGINES:
        pytest.fail(f"{reason} -- but UNILLM_REQUIRE_ENGINES requires "
                    f"{', '.join(sorted(REQUIRED_ENGINES))}", pytrace=False)
    pytest.skip(reason)
