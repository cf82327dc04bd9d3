"""`import unillm` stays light: no engine library, no torch, no numpy."""

from __future__ import annotations

import subprocess
import sys


def test_import_unillm_imports_no_engine_library():
    code = (
        "import sys, unillm; unillm.SamplingParams(max_tokens=3); "
        "heavy = [m for m in ('torch', 'transformers', 'numpy', 'ctranslate2', 'vllm', "
        "'llama_cpp', 'httpx', 'fastapi', 'ray') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_listing_engines_imports_no_engine_library():
    code = (
        "import sys, unillm; names = [e.name for e in unillm.engines()]; "
        "assert 'transformers' in names, names; "
        "print([m for m in ('torch', 'transformers', 'ctranslate2', 'vllm') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unillm_testing_is_an_attribute_on_first_use_without_importing_torch():
    """The README's snippet calls `unillm.testing.build_test_model` after a bare `import unillm`."""
    code = (
        "import sys, unillm; assert 'unillm.testing' not in sys.modules; "
        "f = unillm.testing.build_test_model; assert callable(f); "
        "assert 'testing' in dir(unillm); "
        "print([m for m in ('torch', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_attributes_still_raise_attribute_error():
    import pytest

    import unillm

    with pytest.raises(AttributeError, match="no attribute 'tseting'"):
        unillm.tseting  # noqa: B018


def test_the_conformance_kit_imports_no_engine_library():
    """A plugin's test module imports the kit at collection: that must stay cheap (torch and
    transformers are needed only when a check builds a test model or runs the reference)."""
    code = (
        "import sys, unillm.testing.conformance as kit; assert kit.EngineConformance; "
        "print([m for m in ('torch', 'transformers', 'numpy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
