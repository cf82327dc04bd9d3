"""The core's tests run on unillm.testing.fake: a pure-Python engine and tokenizer, no torch."""

from __future__ import annotations

import pytest

import unillm
from unillm.testing.fake import ByteTokenizer, FakeEngine


@pytest.fixture
def fake_generator() -> unillm.Generator:
    gen = unillm.Generator(FakeEngine(), engine_name="fake", model="fake")
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def byte_tokenizer() -> ByteTokenizer:
    return ByteTokenizer()
