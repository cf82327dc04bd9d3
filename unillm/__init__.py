"""unillm: one interface for every LLM inference engine.

    import unillm
    gen = unillm.load("transformers", "path/to/model")
    out = gen.generate(["Hello"], unillm.SamplingParams(max_tokens=32, temperature=0))

Importing unillm imports no engine: each engine imports its library when it is loaded.
"""

from .backends.quantization import QuantizationConfig
from .engine import (
    Capabilities,
    Engine,
    EngineOptions,
    EngineRequest,
    EngineResult,
    EngineSequence,
    Knob,
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
from .results import Chunk, Completion, Completions, Sample, TokenLogprob
from .timing import RunTiming, Stats, Summary, Timing

__version__ = "0.1.0"

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
    "RunTiming",
    "Sample",
    "SaveNotSupportedError",
    "SamplingParams",
    "Stats",
    "Stream",
    "Summary",
    "TokenEvent",
    "TokenLogprob",
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
