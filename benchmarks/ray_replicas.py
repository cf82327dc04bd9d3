"""Ray replicas: what a second replica buys, and what the Ray path costs.

Three generators on the same model, each engine limited to the same number of torch threads:
the engine in this process (`local`), one Ray replica (`1 replica`) and two (`2 replicas`).
The same batch of prompts (fixed length: ignore_eos) runs through each in alternating order,
`--repeats` times; the figures are medians.

- scaling = output throughput of 2 replicas / 1 replica (ideal: 2.0 with a free core per
  replica; on a 2-core machine the driver, Ray's own processes and anything else running
  share those cores, so expect well under 2);
- overhead = wall time of 1 replica / local (the cost of dispatching through Ray: pickling
  requests and results, the actor call, re-anchoring token times).

On a shared machine wall times say as much about the neighbours as about unillm, so each run
also records CPU seconds (this process + each replica's process), which do not depend on the
share of the machine a process got:
- capacity scaling = CPU s of the 1 replica / CPU s of the busiest of 2: the speed-up 2
  replicas give when each has a core of its own;
- CPU overhead = CPU s of (driver + replica) / CPU s of the local engine.

    python benchmarks/ray_replicas.py --preset llama-small --prompts 16 --max-tokens 64
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import unillm  # noqa: E402
from unillm.testing import build_test_model  # noqa: E402

PROMPTS = [
    "The quick brown fox jumps over the lazy dog",
    "def fibonacci(n):",
    "Once upon a time, in a land far away,",
    "import numpy as np\nimport pandas as pd\n",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="llama-small", help="test model preset")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of every engine")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--stream-tokens", type=int, default=128,
                    help="also time one stream of this many tokens, local vs 1 replica (0: skip)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    import ray

    model = str(build_test_model(args.preset))
    cpus = os.cpu_count() or 2
    ray.init(num_cpus=cpus, object_store_memory=100 * 1024**2, include_dashboard=False,
             log_to_driver=False)
    engine_opts = {"dtype": "float32", "threads": args.threads}
    # 3 replica actors in all beside the local engine: reserve fractions so all fit at once
    # (the reservation is bookkeeping; `threads` is what bounds each engine's CPU use).
    share = cpus / 3
    gens = {
        "local": unillm.load("transformers", model, **engine_opts),
        "1 replica": unillm.load("transformers", model, replicas=1, num_cpus=share, **engine_opts),
        "2 replicas": unillm.load("transformers", model, replicas=2, num_cpus=share, **engine_opts),
    }
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.prompts)]
    params = unillm.SamplingParams(max_tokens=args.max_tokens, temperature=0.0, ignore_eos=True)

    expected = [c.token_ids for c in gens["local"].generate(prompts, params)]
    for name, gen in gens.items():
        got = [c.token_ids for c in gen.generate(prompts, params)]
        if got != expected:
            raise SystemExit(f"{name}: outputs differ from the local engine's")
    for _ in range(args.warmup):
        for gen in gens.values():
            gen.generate(prompts, params)

    actors = {name: getattr(gen.engine, "actors", []) for name, gen in gens.items()}

    def replica_cpu(name: str) -> list[float]:
        return ray.get([a.cpu_seconds.remote() for a in actors[name]])

    walls: dict[str, list[float]] = {k: [] for k in gens}
    driver_cpu: dict[str, list[float]] = {k: [] for k in gens}
    replicas_cpu: dict[str, list[list[float]]] = {k: [] for k in gens}
    names = list(gens)
    for i in range(args.repeats):
        order = names[i % len(names):] + names[:i % len(names)]  # rotate who goes first
        for name in order:
            before, d0 = replica_cpu(name), time.process_time()
            out = gens[name].generate(prompts, params)
            driver_cpu[name].append(time.process_time() - d0)
            replicas_cpu[name].append([b - a for a, b in zip(before, replica_cpu(name))])
            walls[name].append(out.run.wall)
            assert out.run.output_tokens == args.prompts * args.max_tokens

    tokens = args.prompts * args.max_tokens
    med = {k: statistics.median(v) for k, v in walls.items()}
    result = {
        "preset": args.preset, "prompts": args.prompts, "max_tokens": args.max_tokens,
        "threads_per_engine": args.threads, "repeats": args.repeats, "cpus": cpus,
        "median_wall_s": med,
        "output_throughput_tok_s": {k: tokens / v for k, v in med.items()},
        "scaling_2_vs_1_replica": med["1 replica"] / med["2 replicas"],
        "overhead_1_replica_vs_local": med["1 replica"] / med["local"],
    }
    cpu = {
        name: {
            "driver": statistics.median(driver_cpu[name]),
            "replicas": [statistics.median(r[k] for r in replicas_cpu[name])
                         for k in range(len(actors[name]))],
        }
        for name in names
    }
    for c in cpu.values():
        c["total"] = c["driver"] + sum(c["replicas"])
    result["median_cpu_s"] = cpu
    result["capacity_scaling_2_vs_1_replica"] = (
        cpu["1 replica"]["replicas"][0] / max(cpu["2 replicas"]["replicas"]))
    result["cpu_overhead_1_replica_vs_local"] = cpu["1 replica"]["total"] / cpu["local"]["total"]
    result["load_average"] = os.getloadavg()

    if args.stream_tokens:
        sp = unillm.SamplingParams(max_tokens=args.stream_tokens, temperature=0.0, ignore_eos=True)
        stream_walls: dict[str, list[float]] = {"local": [], "1 replica": []}
        ttfts: dict[str, list[float]] = {"local": [], "1 replica": []}
        for i in range(args.repeats):
            for name in (["local", "1 replica"] if i % 2 == 0 else ["1 replica", "local"]):
                start = time.perf_counter()
                stream = gens[name].stream(PROMPTS[0], sp)
                for _ in stream:
                    pass
                stream_walls[name].append(time.perf_counter() - start)
                ttfts[name].append(stream.completion.timing.ttft)
        smed = {k: statistics.median(v) for k, v in stream_walls.items()}
        result["stream"] = {
            "tokens": args.stream_tokens,
            "median_wall_s": smed,
            "median_ttft_s": {k: statistics.median(v) for k, v in ttfts.items()},
            "overhead_1_replica_vs_local": smed["1 replica"] / smed["local"],
        }

    for gen in gens.values():
        gen.close()
    ray.shutdown()

    print(f"{args.prompts} prompts x {args.max_tokens} tokens, {args.preset}, "
          f"{args.threads} thread(s) per engine, {cpus} CPUs, median of {args.repeats}")
    for name in names:
        print(f"  {name:11s} {med[name] * 1000:9.1f} ms  "
              f"{result['output_throughput_tok_s'][name]:8.0f} tok/s")
    for name in names:
        c = cpu[name]
        print(f"  {name:11s} CPU s: driver {c['driver']:.3f}, replicas "
              f"{[round(x, 3) for x in c['replicas']]}, total {c['total']:.3f}")
    print(f"  scaling, 2 replicas / 1 replica:  {result['scaling_2_vs_1_replica']:.2f}x wall, "
          f"{result['capacity_scaling_2_vs_1_replica']:.2f}x capacity (CPU s)")
    print(f"  overhead, 1 replica / local:      {result['overhead_1_replica_vs_local']:.3f} wall, "
          f"{result['cpu_overhead_1_replica_vs_local']:.3f} CPU s")
    print(f"  load average during the run: {' '.join(f'{x:.1f}' for x in result['load_average'])}")
    if "stream" in result:
        s = result["stream"]
        print(f"  one stream of {s['tokens']} tokens: local {s['median_wall_s']['local'] * 1000:.1f} ms "
              f"(ttft {s['median_ttft_s']['local'] * 1000:.1f} ms), 1 replica "
              f"{s['median_wall_s']['1 replica'] * 1000:.1f} ms (ttft "
              f"{s['median_ttft_s']['1 replica'] * 1000:.1f} ms): overhead "
              f"{s['overhead_1_replica_vs_local']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
