"""The same SamplingParams must mean the same thing on every engine.

unillm runs its own conformance kit (unillm.testing.conformance, the one a plugin runs against
its engine) on every target of tests/conformance/targets.py: every registered engine, in every
configuration listed there. Restrict a run with UNILLM_TARGETS=id1,id2 or -k.
"""

from __future__ import annotations

from unillm.testing.conformance import EngineConformance

from .targets import all_targets


class TestEngines(EngineConformance):
    @classmethod
    def conformance_targets(cls):
        return all_targets()
