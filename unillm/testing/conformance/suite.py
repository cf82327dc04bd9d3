"""`EngineConformance`: every check of the kit in one class to derive from."""

from __future__ import annotations

from .defaults import CheckpointDefaults
from .greedy import GreedyParity
from .length import LengthAndEos
from .sampling import Sampling
from .stops import StopConditions
from .stream_many import ManyStreams
from .streaming import Streaming


class EngineConformance(GreedyParity, LengthAndEos, StopConditions, Sampling,
                        CheckpointDefaults, Streaming, ManyStreams):
    """Derive from this in a test module, name your engine, and pytest runs the whole kit::

        from unillm.testing.conformance import EngineConformance

        class TestMyEngine(EngineConformance):
            engine = "myengine"
            options = {"dtype": "float32"}

    See `ConformanceBase` for `targets` (several configurations) and the fixtures. A new
    capability adds its module and its class to these bases, and every engine that derives
    from `EngineConformance` runs it.
    """


SUITES = EngineConformance.__bases__
"""The kit's test classes, one module each."""
