"""What unillm costs over calling an engine directly.

For each engine: the same loaded model, the same prompts and parameters, run through
`gen.generate` and through the engine's own API (benchmarks/baselines/<engine>.py), in
alternating order, `--repeats` times each. Prints each side's median wall time and the ratio
of medians (unillm / direct): 1.00 means no overhead; the target is <= 1.02.

    python benchmarks/overhead.py --engines transformers --batch-sizes 1,16
    python benchmarks/overhead.py --engines openai --base-url http://127.0.0.1:8000/v1 \
        --server llama-cpp-python     # an HTTP engine: against a server you started
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import unillm  # noqa: E402
from unillm.testing import build_test_model  # noqa: E402

PROMPTS = [
    "The quick brown fox jumps over the lazy dog",
    "def fibonacci(n):",
    "Once upon a time, in a land far away,",
    "import numpy as np\nimport pandas as pd\n",
]

ENGINE_OPTIONS = {
    "transformers": {"dtype": "float32"},
    # One thread: on a small shared machine, CTranslate2's OpenMP threads spinning against
    # other processes make both sides' timings swing by 10x; the ratio is what is measured.
    "ctranslate2": {"compute_type": "float32", "intra_threads": 1},
    "vllm": {"dtype": "float32", "enforce_eager": True},
    "llamacpp": {"quantization": "f32", "kv_cache_type": "f32"},
}


def measure(engine: str, model: str, batch: int, max_tokens: int, repeats: int, warmup: int,
            options: dict) -> dict:
    gen = unillm.load(engine, model, **options)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    params = unillm.SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    baseline = importlib.import_module(f"baselines.{engine}").direct(gen, prompts, params)

    def via_unillm() -> int:
        out = gen.generate(prompts, params)
        return sum(c.timing.output_tokens for c in out)

    for _ in range(warmup):
        via_unillm()
        baseline()
    times = {"unillm": [], "direct": []}
    tokens = {}
    for i in range(repeats):
        order = [("unillm", via_unillm), ("direct", baseline)]
        if i % 2:
            order.reverse()
        for name, fn in order:
            start = time.perf_counter()
            tokens[name] = fn()
            times[name].append(time.perf_counter() - start)
    gen.close()
    if tokens["unillm"] != tokens["direct"]:
        raise SystemExit(f"{engine}: unillm made {tokens['unillm']} tokens, direct {tokens['direct']}")
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "engine": engine, "batch": batch, "max_tokens": max_tokens, "repeats": repeats,
        "tokens": tokens["unillm"], "median_unillm_s": med["unillm"],
        "median_direct_s": med["direct"], "ratio": med["unillm"] / med["direct"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="transformers")
    ap.add_argument("--preset", default="llama-tiny", help="test model preset")
    ap.add_argument("--batch-sizes", default="1,16")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="extra engine option (value parsed as JSON when it can be), e.g. "
                    "--option batch_token_times=true; repeatable")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--base-url", help="HTTP engines: the server's address")
    ap.add_argument("--server", help="openai engine: the server profile")
    args = ap.parse_args()
    extra = {}
    for item in args.option:
        key, _, value = item.partition("=")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            extra[key] = value

    model = str(build_test_model(args.preset))
    if args.base_url:  # an HTTP engine: the server's model, not the local test model
        model = None
        ENGINE_OPTIONS.update(openai={"base_url": args.base_url, "server": args.server or "openai"},
                              tgi={"base_url": args.base_url})
    rows = []
    for engine in args.engines.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            row = measure(engine, model, batch, args.max_tokens, args.repeats, args.warmup,
                          {**ENGINE_OPTIONS.get(engine, {}), **extra})
            row["preset"] = args.preset
            row["options"] = extra
            rows.append(row)
            print(f"{engine:14s} batch {batch:3d}  unillm {row['median_unillm_s'] * 1000:8.2f} ms  "
                  f"direct {row['median_direct_s'] * 1000:8.2f} ms  ratio {row['ratio']:.3f}",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
