"""The same model, smaller: quantize on load, see what it bought, save, reload.

    python examples/quantized.py            # needs unillm[bnb] (nf4); no download
"""

import os
import tempfile

import unillm
from unillm.testing import resolve_model

model = resolve_model(os.environ.get("UNILLM_EXAMPLE_MODEL", "test:llama-quant"))
params = unillm.SamplingParams(max_tokens=24, temperature=0)

with unillm.load("transformers", model, dtype="float32") as full:
    full_bytes = full.info["weight_bytes"]

with unillm.load("transformers", model, quantization="nf4") as gen:  # or "int8", "gptq", ...
    out = gen.generate("The quick brown fox", params)
    info = gen.info
    print(f"{info['quantization']['method']}: {info['weight_bytes']:,} bytes "
          f"({full_bytes / info['weight_bytes']:.2f}x smaller than float32), "
          f"{info['quantization']['quantized_layers']} layers quantized")
    print(f"{out.timing.output_tokens} tokens, {out.timing.output_tokens / out.timing.e2e:.0f} tok/s:",
          repr(out.text))
    with tempfile.TemporaryDirectory() as saved:
        gen.save(saved)
        with unillm.load("transformers", saved) as again:  # quantized, from its config.json
            assert again.generate("The quick brown fox", params).token_ids == out.token_ids
            print("saved and reloaded: same greedy tokens")
