"""Swap engines with one argument: the same code, params and result fields on every engine.

    python examples/swap_engines.py                      # every installed local engine
    python examples/swap_engines.py transformers ctranslate2
"""

import sys

import unillm
from _model import example_model

model = example_model()
params = unillm.SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
wanted = sys.argv[1:] or [
    e.name for e in unillm.engines()
    if e.status == "installed" and e.engine_class.local and e.name in ("transformers", "ctranslate2", "vllm", "llamacpp")
]
first = None
for name in wanted:
    with unillm.load(name, model) as gen:              # <- the only line that names an engine
        out = gen.generate(["The quick brown fox", "def main():"], params)
    ids = [c.token_ids for c in out]
    first = first or ids
    print(f"{name:14s} tokens={[len(i) for i in ids]} tok/s={out.run.output_throughput:8.0f} "
          f"same_as_first={ids == first} received={dict(out[0].engine_params)}")
