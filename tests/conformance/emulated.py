"""A real engine that declares less than it can, so the conformance suite also runs unillm's
own emulation paths (stop strings, stop token ids, n; no per-token stop hook) on a real model.
No mock: it is the transformers engine, told to do less natively."""

from __future__ import annotations

import unillm
from unillm.backends.transformers import TransformersEngine
from unillm.engine import ALL_FIELDS, Capabilities


class MinimalTransformersEngine(TransformersEngine):
    capabilities = Capabilities(
        params=ALL_FIELDS - {"stop", "stop_token_ids", "n", "logprobs", "presence_penalty",
                             "frequency_penalty"},
        batch_params="uniform",
        stop_hook=False,
    )


class EmulationPlugin:
    @unillm.hookimpl
    def unillm_register_engines(self, register):
        register("transformers-minimal", MinimalTransformersEngine,
                 requires=("torch", "transformers"),
                 description="transformers declaring minimal capabilities (tests emulation)")
