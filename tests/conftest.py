"""Shared test fixtures: locally built models, and engine gating.

An engine that is not installed is skipped with the reason and the install command, so the
summary (-ra) says what did not run and why. In CI, UNILLM_REQUIRE_ENGINES lists the engines
that must run: for those, "not installed" is a failure, never a quiet skip.
"""

from __future__ import annotations

import importlib.util

import pytest

import unillm
from unillm.testing import build_test_model

# Engine gating lives in the conformance kit, which plugins use too; the tests import it here.
from unillm.testing.conformance.gating import REQUIRED_ENGINES, require, require_engine  # noqa: F401


def require_module(module: str, reason: str, component: str):
    """`pytest.importorskip` that fails instead when CI requires `component` (listed in
    UNILLM_REQUIRE_ENGINES, e.g. ``serve`` or ``serve-clients``): a missing test dependency
    must not turn a suite into silent skips."""
    try:
        return importlib.import_module(module)
    except ImportError:
        require(False, f"{reason} ({module} is not installed)", component)


@pytest.fixture(scope="session")
def tiny_llama() -> str:
    return str(build_test_model("llama-tiny"))


@pytest.fixture(scope="session")
def hf_generator(tiny_llama):
    """The transformers engine on the tiny Llama (float32), shared by the session."""
    require_engine("transformers")
    gen = unillm.load("transformers", tiny_llama, dtype="float32")
    yield gen
    gen.close()


def _vocab_size(model_dir: str) -> int:
    import json
    from pathlib import Path

    return int(json.loads((Path(model_dir) / "config.json").read_text())["vocab_size"])


@pytest.fixture(scope="session")
def llama_cpp_server():
    """function(model_dir) -> (model name, `openai` engine options) for llama-cpp-python's own
    OpenAI-compatible server serving that model (an f32 GGUF conversion); started on first use,
    stopped at the end of the session."""
    from .servers.llama_cpp import LlamaCppServers, missing_requirements

    servers = LlamaCppServers()

    def start(model_dir: str) -> tuple[str, dict]:
        missing = missing_requirements()
        require(not missing, "llama-cpp-python's server cannot run here: missing "
                + ", ".join(missing) + ' (install: pip install -e ".[test-servers]" '
                "-e plugins/unillm-llamacpp)", "openai")
        url = servers.base_url(model_dir)
        return "test-model", {"base_url": url + "/v1", "server": "llama-cpp-python",
                              "timeout": 120.0, "vocab_size": _vocab_size(model_dir)}

    yield start
    servers.close()


@pytest.fixture(scope="session")
def llama_server():
    """Like `llama_cpp_server`, for llama.cpp's own server (`llama-server`), built by
    scripts/build-llama-server.sh (CI builds it) or named by UNILLM_LLAMA_SERVER."""
    from .servers.llama_server import LlamaServers, binary

    servers = LlamaServers()

    def start(model_dir: str) -> tuple[str, dict]:
        require(binary() is not None, "llama.cpp's llama-server is not built here (build it: "
                "bash scripts/build-llama-server.sh, or set UNILLM_LLAMA_SERVER)", "llama-server")
        require(importlib.util.find_spec("unillm_llamacpp") is not None, "the GGUF converter "
                "is missing (pip install -e plugins/unillm-llamacpp)", "llama-server")
        url = servers.base_url(model_dir)
        return "test-model", {"base_url": url + "/v1", "server": "llama.cpp", "timeout": 120.0,
                              "vocab_size": _vocab_size(model_dir)}

    yield start
    servers.close()


@pytest.fixture(scope="session")
def vllm_server():
    """Like `llama_cpp_server`, for vLLM's own OpenAI-compatible server. Opt-in: vLLM needs its
    own environment, named by UNILLM_VLLM_PYTHON."""
    from .servers.vllm import VLLMServers, python

    servers = VLLMServers()

    def start(model_dir: str) -> tuple[str, dict]:
        if python() is None:
            pytest.skip("vLLM's server runs in its own environment: set UNILLM_VLLM_PYTHON to "
                        "that environment's python to run this target")
        url = servers.base_url(model_dir)
        return "test-model", {"base_url": url + "/v1", "server": "vllm", "timeout": 120.0,
                              "vocab_size": _vocab_size(model_dir)}

    yield start
    servers.close()


@pytest.fixture(scope="session")
def tgi_standin(hf_generator, tiny_llama):
    """Base URL of a TGI-protocol stand-in server running the tiny Llama through the
    transformers engine (no real TGI can run here: see tests/servers/tgi_standin.py)."""
    from .servers import serve_in_thread
    from .servers.tgi_standin import create_app

    with serve_in_thread(create_app(hf_generator, model_id="llama-tiny"), "/health") as url:
        yield url


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Every skip reason once, with how many tests it skipped: which engines did not run here
    and why (pytest's own -rs lists them once per test location)."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if not reasons:
        return
    terminalreporter.section("skipped, by reason")
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"SKIPPED ({count} tests): {reason}")
