"""The scoring tests' targets: the conformance suite's (tests/conformance/targets.py, read
only), loaded once per session, and the float32 transformers reference on each preset."""

from __future__ import annotations

import pytest

import unillm
from unillm.testing import build_test_model

from ..conformance import conftest as _conformance  # noqa: F401 - registers the emulation
# target's engine, once per session however the two directories are collected
from ..conformance.targets import Target, all_targets
from ..conftest import REQUIRED_ENGINES, require_engine

_loaded: dict[tuple[str, str], unillm.Generator] = {}
GAPS: dict[str, dict] = {}
"""Measured perplexity gaps of quantized targets, printed at the end of the session."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`float_target`: the targets whose output must equal float32's; `quantized_target`:
    the others (their distance from float32 is measured)."""
    for name, exact in (("float_target", True), ("quantized_target", False)):
        if name in metafunc.fixturenames:
            chosen = [t for t in all_targets() if t.exact == exact]
            metafunc.parametrize(name, chosen, ids=str, scope="session")


def load(request: pytest.FixtureRequest, target: Target, preset: str) -> unillm.Generator:
    """The target's generator on `preset`, loaded once per session (skipped with the reason
    when its engine or server cannot run here)."""
    require_engine(target.engine)
    if preset not in target.presets:
        pytest.skip(f"{target.id} is not configured for {preset}")
    key = (target.id, preset)
    if key not in _loaded:
        model = str(build_test_model(preset))
        options = dict(target.options)
        if target.server is not None:
            model, extra = request.getfixturevalue(target.server)(model)
            options.update(extra)
        try:
            _loaded[key] = unillm.load(target.engine, model, **options)
        except unillm.EngineUnavailableError as exc:
            if exc.engine in REQUIRED_ENGINES:
                pytest.fail(f"{exc} -- but UNILLM_REQUIRE_ENGINES requires it", pytrace=False)
            pytest.skip(str(exc))
    return _loaded[key]


def reference(preset: str) -> unillm.Generator:
    """transformers in float32 on `preset`: what every float32 engine's scores must equal."""
    require_engine("transformers")
    key = ("reference", preset)
    if key not in _loaded:
        _loaded[key] = unillm.load("transformers", str(build_test_model(preset)), dtype="float32")
    return _loaded[key]


def pytest_sessionfinish(session, exitstatus) -> None:
    for gen in _loaded.values():
        gen.close()
    _loaded.clear()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not GAPS:
        return
    terminalreporter.section("perplexity of quantized engines vs float32 transformers")
    for name, gap in sorted(GAPS.items()):
        terminalreporter.write_line(
            f"{name:28s} {gap['preset']:12s} perplexity {gap['perplexity']:10.2f}  float32 "
            f"{gap['reference']:10.2f}  gap {gap['gap_percent']:+7.2f}%  mean |d logprob| "
            f"{gap['mean_abs_diff']:.4f}")
