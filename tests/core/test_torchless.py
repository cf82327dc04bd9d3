"""The core's own tests need no engine library: they run on unillm.testing.fake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ["test_params.py", "test_planning.py", "test_decoding.py", "test_timing.py",
        "test_prepare.py", "test_assembly.py", "test_registry.py"]


def test_the_core_tests_pass_with_torch_and_every_engine_unimportable():
    if os.environ.get("UNILLM_TORCHLESS"):  # the run below: don't recurse
        return
    env = {**os.environ, "UNILLM_TORCHLESS": "1", "UNILLM_REQUIRE_ENGINES": ""}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.core.torchless", "-p",
         "no:cacheprovider", *[f"tests/core/{name}" for name in CORE]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    tail = run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    assert " passed" in tail and "error" not in tail.lower().split("passed")[-1], tail
