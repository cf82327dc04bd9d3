"""unillm's own conformance run: the emulation target's engine is registered before the
targets are listed (tests/conformance/targets.py)."""

from __future__ import annotations

import unillm

from .emulated import EmulationPlugin

unillm.register_plugin(EmulationPlugin(), name="conformance-emulation")
