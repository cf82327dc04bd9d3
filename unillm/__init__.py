"""unillm: one interface for every LLM inference engine.

    import unillm
    gen = unillm.load("transformers", "path/to/model")
    out = gen.generate(["Hello"], unillm.SamplingParams(max_tokens=32, temperature=0))

Importing unillm imports no engine: each engine imports its library when it is loaded.
`unillm.testing` (test models; it needs torch and transformers to build one) is imported on
first use, so `import unillm; unillm.testing.build_test_model(...)` works without making
`import unillm` heavy.
"""

import importlib as _importlib

from .backends.quantization import QuantizationConfig
from .engine import (
    Capabilities,
    Engine,
    EngineOptions,
    EngineRequest,
    EngineResult,
    EngineSequence,
    Knob,
    ScoreRequest,
    ScoreResult,
    RunningBatch,
    TokenEvent,
)
from .errors import (
    BatchError,
    ContextLengthError,
    EngineError,
    EngineNotFoundError,
    EngineUnavailableError,
    GeneratorClosedError,
    InvalidParameterError,
    InvalidPromptError,
    PartialBatchFailure,
    SaveNotSupportedError,
    UnillmError,
    UnknownParameterError,
    UnsupportedParameterError,
)
from .generator import (
    AsyncStream,
    Generator,
    MultiStream,
    Prepared,
    Stream,
    TokensPrompt,
)
from .hookspecs import hookimpl
from .loading import load
from .params import SamplingParams
from .registry import EngineInfo, engines, register_plugin
from .results import (
    Chunk,
    Completion,
    Completions,
    RollingScore,
    Sample,
    Score,
    Scores,
    ScoreTiming,
    TokenLogprob,
    TokenScore,
    ToolCall,
    ToolCallDelta,
)
from .timing import RunTiming, Stats, Summary, Timing

__version__ = "0.1.0"

# Submodules that `unillm.NAME` reaches without an explicit import, imported on first access.
_LAZY_SUBMODULES = ("testing",)


def __getattr__(name: str):
    """`unillm.testing` without `import unillm.testing`: a newcomer's first snippet does that."""
    if name in _LAZY_SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY_SUBMODULES])

__all__ = [
    "AsyncStream",
    "BatchError",
    "Capabilities",
    "Chunk",
    "Completion",
    "Completions",
    "ContextLengthError",
    "Engine",
    "EngineError",
    "EngineInfo",
    "EngineNotFoundError",
    "EngineOptions",
    "EngineRequest",
    "EngineResult",
    "EngineSequence",
    "EngineUnavailableError",
    "Generator",
    "GeneratorClosedError",
    "InvalidParameterError",
    "InvalidPromptError",
    "Knob",
    "PartialBatchFailure",
    "MultiStream",
    "Prepared",
    "QuantizationConfig",
    "RollingScore",
    "RunTiming",
    "RunningBatch",
    "Sample",
    "SaveNotSupportedError",
    "SamplingParams",
    "Score",
    "ScoreRequest",
    "ScoreResult",
    "ScoreTiming",
    "Scores",
    "Stats",
    "Stream",
    "Summary",
    "TokenEvent",
    "TokenLogprob",
    "TokenScore",
    "ToolCall",
    "ToolCallDelta",
    "Timing",
    "TokensPrompt",
    "UnillmError",
    "UnknownParameterError",
    "UnsupportedParameterError",
    "engines",
    "hookimpl",
    "load",
    "register_plugin",
    "__version__",
]
