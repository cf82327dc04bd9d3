"""Which scheduler serves an engine (`ServeConfig.scheduling`), in one place.

``auto``: engines with a running batch (`Engine.running_batch`: transformers, llama.cpp,
vLLM) get `ContinuousScheduler`, which hands each engine step to the event loop whole; engines
that schedule concurrent requests themselves without one (`concurrent` with a native
`astream`: HTTP engines) get `DirectScheduler`; the others (CTranslate2) get `MicroBatcher`.
"""

from __future__ import annotations

from ..generator import Generator
from .config import ServeConfig
from .metrics import ServeMetrics
from .running import ContinuousScheduler
from .scheduler import DirectScheduler, MicroBatcher, Scheduler


def make_scheduler(gen: Generator, config: ServeConfig, metrics: ServeMetrics) -> Scheduler:
    mode = config.scheduling
    if mode == "auto":
        if gen.running_batch() is not None:
            mode = "continuous"
        elif gen.capabilities.concurrent and gen._native("astream"):
            mode = "direct"
        else:
            mode = "batch"
    if mode == "continuous":
        return ContinuousScheduler(gen, config, metrics)
    if mode == "direct":
        return DirectScheduler(gen, config, metrics)
    return MicroBatcher(gen, config, metrics)
