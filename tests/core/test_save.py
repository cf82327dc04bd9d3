"""`Generator.save`: engines that save do it through `Engine.save`; the others say they cannot."""

from __future__ import annotations

import pytest

import unillm
from unillm.engine import ALL_FIELDS, Capabilities, Engine, EngineOptions


class _NoSaveEngine(Engine):
    """An engine that implements only the required methods (never asked to generate here)."""

    capabilities = Capabilities(params=ALL_FIELDS)

    def generate(self, requests):  # pragma: no cover - not called
        raise AssertionError

    def stream(self, request):  # pragma: no cover - not called
        raise AssertionError


def test_an_engine_without_save_refuses_clearly_stub_engine(tmp_path):
    engine = _NoSaveEngine("some-model", EngineOptions())
    engine.name = "nosave"
    gen = unillm.Generator(engine, engine_name="nosave", model="some-model")
    with pytest.raises(unillm.SaveNotSupportedError, match="'nosave'.*does not implement save"):
        gen.save(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_closed_generator_cannot_save_stub_engine(tmp_path):
    gen = unillm.Generator(_NoSaveEngine("m", EngineOptions()), engine_name="nosave", model="m")
    gen.close()
    with pytest.raises(unillm.GeneratorClosedError):
        gen.save(tmp_path)
