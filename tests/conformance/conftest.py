from __future__ import annotations

import pytest

import unillm
from unillm.testing import build_test_model

from ..conftest import REQUIRED_ENGINES, require_engine
from .emulated import EmulationPlugin
from .targets import Target, all_targets

unillm.register_plugin(EmulationPlugin(), name="conformance-emulation")

_loaded: dict[tuple[str, str], unillm.Generator] = {}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" in metafunc.fixturenames:
        metafunc.parametrize("target", all_targets(), ids=str, scope="session")


def load_target(request: pytest.FixtureRequest, target: Target, preset: str) -> unillm.Generator:
    """The target's generator on `preset`, loaded once per session."""
    require_engine(target.engine)
    if preset not in target.presets:
        pytest.skip(f"{target.id} is not configured for {preset}")
    key = (target.id, preset)
    if key not in _loaded:
        model = str(build_test_model(preset))
        options = dict(target.options)
        if target.server is not None:  # HTTP engines: the fixture starts the server
            model, extra = request.getfixturevalue(target.server)(model)
            options.update(extra)
        try:
            _loaded[key] = unillm.load(target.engine, model, **options)
        except unillm.EngineUnavailableError as exc:  # e.g. Ray, for a replicated target
            if exc.engine in REQUIRED_ENGINES:
                pytest.fail(f"{exc} -- but UNILLM_REQUIRE_ENGINES requires it", pytrace=False)
            pytest.skip(str(exc))
    return _loaded[key]


@pytest.fixture
def gen(request: pytest.FixtureRequest, target: Target) -> unillm.Generator:
    return load_target(request, target, target.preset)


@pytest.fixture
def model_path(target: Target) -> str:
    """The float32 checkpoint `gen` was loaded from (the reference's model)."""
    return str(build_test_model(target.preset))


def pytest_sessionfinish(session, exitstatus) -> None:
    for gen in _loaded.values():
        gen.close()
    _loaded.clear()
