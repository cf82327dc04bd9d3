"""What one step of the llama.cpp running batch costs, by what it holds.

Runs `--sequences` greedy requests through the engine's running batch (`Generator.stream_many`)
and, while they decode, two late requests that join it; every `llama_decode` call is timed and
classed by its tokens: ``decode N`` (N sequences, one token each), ``prompts`` (prompt chunks
only) or ``mixed`` (decoding tokens and prompt chunks). Prints the count and median time of
each class, and writes them with every step to `--out` (JSON).

This is the measurement behind docs/serve.md's "Why prompts first": a step's time grows with
its tokens, so a joining request's first token should not wait for a step that also decodes
every running sequence.

    python benchmarks/llamacpp_steps.py --model test:llama-small --sequences 64
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import threading
import time
from typing import Any

import unillm
from unillm import SamplingParams
from unillm.testing import resolve_model

WORDS = ("the quick brown fox jumps over a lazy dog while seven cats watch from the old red "
         "barn").split()


class TimedLib:
    """llama.cpp's library as the running batch sees it, timing each `llama_decode` call and
    recording how many tokens each sequence had in it."""

    def __init__(self, lib: Any):
        self.lib, self.steps = lib, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lib, name)

    def llama_decode(self, ctx: Any, batch: Any) -> int:
        per_sequence = collections.Counter(batch.seq_id[i][0] for i in range(batch.n_tokens))
        start = time.perf_counter()
        code = self.lib.llama_decode(ctx, batch)
        self.steps.append({"s": time.perf_counter() - start, "tokens": batch.n_tokens,
                           "per_sequence": sorted(per_sequence.values())})
        return code


def kind(step: dict[str, Any]) -> str:
    counts = step["per_sequence"]
    if max(counts) == 1:
        return f"decode {len(counts)}"
    return "prompts" if min(counts) > 1 else "mixed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="test:llama-small")
    ap.add_argument("--sequences", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="llamacpp_steps.json")
    a = ap.parse_args()
    total = a.sequences + 2
    gen = unillm.load("llamacpp", resolve_model(a.model), quantization="f32",
                      kv_cache_type="f32", n_threads=a.threads, parallel=total,
                      parallel_ctx=a.max_tokens + 128)
    prompts = [" ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(20 + i % 7))
               for i in range(total)]
    running = gen.running_batch()
    running.lib = timed = TimedLib(running.lib)
    short = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)

    def late(index: int, delay: float) -> None:
        time.sleep(delay)
        for _ in gen.stream_many([prompts[index]], short):
            pass

    joiners = [threading.Thread(target=late, args=(a.sequences + k, 3.0 + 1.5 * k))
               for k in range(2)]
    for thread in joiners:
        thread.start()
    for _ in gen.stream_many(prompts[:a.sequences],
                             SamplingParams(max_tokens=a.max_tokens, temperature=0.0,
                                            ignore_eos=True)):
        pass
    for thread in joiners:
        thread.join()
    gen.close()
    by_kind: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for step in timed.steps:
        by_kind[kind(step)].append(step)
    summary = {k: {"steps": len(v), "median_ms": round(statistics.median(s["s"] for s in v) * 1e3, 1),
                   "median_tokens": statistics.median(s["tokens"] for s in v)}
               for k, v in sorted(by_kind.items())}
    for k, row in summary.items():
        print(f"{k:12s} {row['steps']:4d} steps  median {row['median_ms']:8.1f} ms  "
              f"{row['median_tokens']:6.0f} tokens")
    with open(a.out, "w") as f:
        json.dump({"model": a.model, "sequences": a.sequences, "threads": a.threads,
                   "summary": summary, "steps": timed.steps}, f, indent=1)


if __name__ == "__main__":
    main()
