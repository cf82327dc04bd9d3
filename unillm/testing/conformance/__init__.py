"""The conformance kit: check that an engine means what unillm means, from your own tests.

The same `SamplingParams` must mean the same thing on every engine. The kit runs an engine on
the test models (`unillm.testing.build_test_model`: three architectures, built locally, whose
`generation_config.json` is booby-trapped so that leaked checkpoint defaults show) and checks:

- the checkpoint's sampling defaults do not leak into sampling;
- greedy ids equal an independent reference: plain argmax over the float32 model's forward
  pass (`reference.py`), alone and in mixed-length batches, on every architecture;
- max_tokens, eos, ignore_eos, min_tokens, stop strings and stop token ids end where they must,
  the terminating token included in `token_ids`;
- every `SamplingParams` field is honoured natively, emulated by unillm, or refused with
  `UnsupportedParameterError`, never ignored; seeds reproduce; filters and penalties mean
  unillm's definitions; n, logprobs;
- a stream reports exactly what a batch call does (text, ids, counts, engine_params,
  emulated, stop reason, logprobs); closing or cancelling a stream stops the engine; async
  equals sync; chat applies the model's template; timing is consistent.

Use it in a plugin's tests (pytest)::

    from unillm.testing.conformance import EngineConformance, Target

    class TestMyEngine(EngineConformance):
        engine = "myengine"                 # as registered by your unillm_register_engines
        options = {"dtype": "float32"}      # unillm.load("myengine", model, **options)

    class TestMyEngineConfigurations(EngineConformance):
        targets = [Target("myengine-int8", "myengine", {"dtype": "int8"}, exact=False,
                          inexact_reason="int8 weights: greedy ids may leave the reference")]

The engine must be registered (an installed package's entry point, or
``unillm.register_plugin(...)`` in your conftest). An engine whose package is missing is
skipped with its install command, or fails where ``UNILLM_REQUIRE_ENGINES`` names it. The kit
needs pytest, torch and transformers (the test models and the reference); importing it imports
neither torch nor transformers.

Adding a capability: write a module here with a class deriving from `ConformanceBase` (its
tests take the `gen`, `target`, `generator_on` or `model_path` fixtures, and skip with the
reason where the engine declares no support), and add the class to `EngineConformance`'s bases
in `suite.py` (`defaults.py` is a small example). Every engine that derives from
`EngineConformance` then runs it, unillm's own targets included; a class can also be mixed
into a test class on its own.
"""

from .base import ConformanceBase
from .defaults import CheckpointDefaults
from .gating import REQUIRED_ENGINES, require, require_engine, required_engines
from .greedy import GreedyParity
from .length import LengthAndEos
from .sampling import KIT_NEEDS, Sampling
from .stops import StopConditions
from .stream_many import ManyStreams
from .streaming import Streaming
from .suite import SUITES, EngineConformance
from .target import ALL_PRESETS, Target

__all__ = [
    "ALL_PRESETS", "KIT_NEEDS", "REQUIRED_ENGINES", "SUITES", "CheckpointDefaults", "ConformanceBase",
    "EngineConformance", "GreedyParity", "LengthAndEos", "ManyStreams", "Sampling",
    "StopConditions", "Streaming", "Target", "require", "require_engine", "required_engines",
]
