"""Compare every installed engine at batch 1 on a locally built model, exactly 32 tokens each,
and write the JSON, CSV and PNG files into ./bench-out.

    python examples/bench_engines.py
"""

from unillm.bench import run_latency, write_outputs
from unillm.bench.spec import installed_local_engines

# llama-quant: the smallest test model that every engine runs, the quantizers included
result = run_latency(installed_local_engines(), "test:llama-quant", max_tokens=32, prompts=4,
                     warmup=1, repeats=1)
for run in result["runs"]:
    point = run["points"][0] if run["points"] else None
    speed = point["metrics"]["tokens_per_s"]["median"] if point else None
    print(f"{run['label']:<16} {run['status']:<9} median {speed or 0:8.1f} tok/s")
for role, path in write_outputs(result, "bench-out", "latency").items():
    print(role, path)
