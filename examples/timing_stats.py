"""Timing of every call, aggregated with Stats and exported as JSON."""

import json
import sys

import unillm
from _model import example_model

out_path = sys.argv[1] if len(sys.argv) > 1 else "stats.json"
stats = unillm.Stats()
with unillm.load("transformers", example_model()) as gen:
    params = unillm.SamplingParams(max_tokens=32, temperature=0.0, ignore_eos=True)
    for _ in range(3):
        stats.add(gen.generate(["a", "bb", "ccc", "dddd"], params))     # batch calls
        stream = gen.stream("streamed prompt", params)
        for _ in stream:
            pass
        stats.add(stream)                                                # streamed calls
summary = stats.summary()
for name in ("ttft", "tpot", "itl", "e2e"):
    s = summary[name]
    print(f"{name:5s} p50={s.median * 1000:7.2f}ms p99={s.p99 * 1000:7.2f}ms (n={s.count})")
stats.to_json(out_path)
data = json.load(open(out_path))
print(f"wrote {out_path}: {data['requests']} requests, run throughput "
      f"{data['run_output_throughput']:.0f} tok/s, peak RSS {data['peak_memory']['rss_bytes'] >> 20} MiB")
