"""What every conformance test class shares: which engine configurations it runs against, and
their generators on the test models, loaded once per configuration and closed after it.

A test class says what to test in one of two ways::

    class TestMyEngine(EngineConformance):
        engine = "myengine"                     # one configuration: this engine ...
        options = {"dtype": "float32"}          # ... loaded with these options

    class TestMyEngine(EngineConformance):
        targets = [Target("myengine-f32", "myengine", {"dtype": "float32"}),
                   Target("myengine-int8", "myengine", {"dtype": "int8"}, exact=False,
                          inexact_reason="int8 weights")]

Each test then runs once per target (``test_x[myengine-f32]``), through pytest's class-level
`pytest_generate_tests`; a class may instead override `conformance_targets` (unillm's own suite
lists every registered engine there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import pytest

import unillm

from ..models import build_test_model
from .gating import require, require_engine
from .target import Target


class ConformanceBase:
    """Fixtures of the kit. Test classes of the kit derive from it; so does a new capability's
    (see unillm/testing/conformance/__init__.py).

    Fixtures: `target` (the `Target` under test), `gen` (its generator on `target.preset`),
    `generator_on` (``preset -> generator``, for the checks run on every architecture) and
    `model_path` (the float32 checkpoint `gen` was loaded from: the reference's model).
    """

    engine: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Any]] = {}
    targets: ClassVar[Sequence[Target]] = ()

    @classmethod
    def conformance_targets(cls) -> Sequence[Target]:
        """The configurations this class tests: `targets`, else one made of `engine` and
        `options`."""
        if cls.targets:
            return list(cls.targets)
        if cls.engine:
            return [Target(cls.engine, cls.engine, dict(cls.options))]
        raise TypeError(f"{cls.__name__}: set `engine` (and `options`), or `targets`, to say "
                        "which engine the conformance kit tests")

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "target" in metafunc.fixturenames:
            # Class scope: pytest runs one target's tests together, so each target's generators
            # are closed (their memory freed) before the next target loads.
            metafunc.parametrize("target", self.conformance_targets(), ids=str, scope="class")

    @pytest.fixture(scope="class")
    def loaded_generators(self, target: Target) -> Iterator[dict[str, unillm.Generator]]:
        """preset -> the target's generator on it, loaded on first use, closed at the end."""
        loaded: dict[str, unillm.Generator] = {}
        yield loaded
        for gen in loaded.values():
            gen.close()
        loaded.clear()

    @pytest.fixture
    def generator_on(self, request: pytest.FixtureRequest, target: Target,
                     loaded_generators: dict[str, unillm.Generator],
                     ) -> Callable[[str], unillm.Generator]:
        """``generator_on(preset)``: the target's generator on that test model. Skips (with the
        reason) an engine that is not installed, or fails where UNILLM_REQUIRE_ENGINES requires
        it, and skips presets the target is not configured for."""

        def generator_on(preset: str) -> unillm.Generator:
            require_engine(target.engine)
            if preset not in target.presets:
                pytest.skip(f"{target.id} is not configured for {preset}")
            if preset not in loaded_generators:
                loaded_generators[preset] = _load(request, target, preset)
            return loaded_generators[preset]

        return generator_on

    @pytest.fixture
    def gen(self, generator_on: Callable[[str], unillm.Generator],
            target: Target) -> unillm.Generator:
        return generator_on(target.preset)

    @pytest.fixture
    def model_path(self, target: Target) -> str:
        """The float32 checkpoint `gen` was loaded from (the reference's model)."""
        return str(build_test_model(target.preset))


def _load(request: pytest.FixtureRequest, target: Target, preset: str) -> unillm.Generator:
    model = str(build_test_model(preset))
    options = dict(target.options)
    if target.server is not None:  # an engine that talks to a server: the fixture starts it
        model, extra = request.getfixturevalue(target.server)(model)
        options.update(extra)
    try:
        return unillm.load(target.engine, model, **options)
    except unillm.EngineUnavailableError as exc:  # e.g. Ray, for a replicated configuration
        require(False, str(exc), exc.engine)
        raise  # pragma: no cover (require skipped or failed)
