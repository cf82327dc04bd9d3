"""`unillm bench` and `unillm tune` as a library: fair engine comparisons and settings search.

    from unillm.bench import EngineSpec, run_latency, write_outputs
    result = run_latency([EngineSpec("transformers")], "test:llama-tiny", max_tokens=32)
    write_outputs(result, "out/")

Every bench returns one result dict (schema ``unillm.bench/1``, see docs/bench.md) and
`write_outputs` turns it into JSON, CSV and PNG files. Importing this package imports no
engine and no plotting or tuning library; each is imported when first used.
"""

from __future__ import annotations

from typing import Any

from .spec import EngineSpec

_LAZY = {
    "run_latency": "latency",
    "run_throughput": "throughput",
    "run_serve": "serve",
    "run_tune": "tune",
    "run_quality": "quality",
    "compare_results": "compare",
    "write_outputs": "outputs",
    "load_result": "results",
    "SCHEMA": "results",
}

__all__ = ["EngineSpec", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'unillm.bench' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
