"""Which scheduler serves an engine (`ServeConfig.scheduling`), in one place.

``auto``: engines that schedule concurrent requests themselves (`concurrent` with a native
`astream`: vLLM, HTTP engines) get `DirectScheduler`; engines with a running batch
(`Engine.running_batch`: transformers, llama.cpp) get `ContinuousScheduler`; the others
(CTranslate2) get `MicroBatcher`.
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
        if gen.capabilities.concurrent and gen._native("astream"):
            mode = "direct"
        else:
            mode = "continuous" if gen.running_batch() is not None else "batch"
    if mode == "continuous":
        return ContinuousScheduler(gen, config, metrics)
    if mode == "direct":
        return DirectScheduler(gen, config, metrics)
    return MicroBatcher(gen, config, metrics)
