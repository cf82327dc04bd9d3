"""What a constraint costs: time per output token, constrained vs unconstrained, per engine.

Every row of both runs generates exactly `--tokens` tokens, so the two runs do the same model
work and differ only by the constraint: the constrained run's JSON schema opens with a few
short fields (an integer range, an enum array, a bounded string) and then a string of at least
4,000 characters, which no row finishes within `--tokens` (finish_reason ``length``, checked);
the unconstrained run has ``ignore_eos`` and the same max_tokens. The two alternate
(constrained, unconstrained, ...) `--repeats` times after a warm-up of each; the figure is the
ratio of their median wall times (target <= 1.15), with each side's spread ((max - min) /
median), and the ratio of the process's CPU time (`time.process_time`, all its threads), which
a machine shared with other work disturbs much less than wall time (vLLM in-process only:
with `multiprocessing` its engine core's CPU time is not counted). Also: the constraint's first compile time (a schema not seen before, so no cache
hit), a cached compile, and the median mask time per generated token (`Timing.grammar_mask_s`;
vLLM computes its masks inside the engine and does not report them).

    python benchmarks/structured.py --engines transformers,llamacpp --batch-sizes 1,16
    .venv-vllm/bin/python benchmarks/structured.py --engines vllm   # merges into the same file

Rows are merged into `--out` by (engine, batch), so runs in different environments add up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import uuid
from pathlib import Path

import unillm
from unillm.testing import build_test_model

OPTIONS = {  # one thread: on a machine shared with other work, more threads spin-wait for
    # each other (OpenMP) and both the wall and the CPU time swing by half
    "transformers": {"dtype": "float32", "threads": 1},
    "llamacpp": {"quantization": "f32", "kv_cache_type": "f32", "n_threads": 1},
    "vllm": {"dtype": "float32", "enforce_eager": True},
}
PROMPTS = ["A user record:", "JSON:", "The answer is", "def f(x):"]


def schema(tag: str) -> dict:
    """Short structured fields first (their masks are the varied ones), then a string longer
    than any run: every row runs to max_tokens."""
    return {"type": "object", "additionalProperties": False, "title": tag,
            "required": ["age", "tags", "name", "bio"],
            "properties": {"age": {"type": "integer", "minimum": 0, "maximum": 120},
                           "tags": {"type": "array", "minItems": 2, "maxItems": 2,
                                    "items": {"enum": ["red", "green", "blue"]}},
                           "name": {"type": "string", "minLength": 3, "maxLength": 12},
                           "bio": {"type": "string", "minLength": 4000}}}


def run(engine: str, model: str, batch: int, tokens: int, repeats: int) -> dict:
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    free = unillm.SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)
    with unillm.load(engine, model, **OPTIONS.get(engine, {})) as gen:
        constrained = unillm.SamplingParams(
            max_tokens=tokens, temperature=0.0,
            structured={"json_schema": schema(f"bench-{uuid.uuid4().hex[:8]}")})
        first = gen.generate(prompts, constrained)  # the first compile, and the warm-up
        compile_first = first[0].timing.grammar_compile_s
        ends = {c.finish_reason for c in first}
        assert ends == {"length"}, f"a constrained row ended early ({ends}): raise minLength"
        gen.generate(prompts, free)
        walls: dict[str, list[float]] = {"constrained": [], "unconstrained": []}
        cpus: dict[str, list[float]] = {"constrained": [], "unconstrained": []}
        hits, masks = [], []
        for _ in range(repeats):
            for kind, params in (("constrained", constrained), ("unconstrained", free)):
                cpu = time.process_time()
                out = gen.generate(prompts, params)
                cpus[kind].append(time.process_time() - cpu)
                walls[kind].append(out.run.wall)
                if kind == "constrained":
                    hits.append(out[0].timing.grammar_compile_s or 0.0)
                    if out[0].timing.grammar_mask_s is not None:
                        masks.append(statistics.median(
                            c.timing.grammar_mask_s / c.timing.output_tokens for c in out))
    med = {k: statistics.median(v) for k, v in walls.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpus.items()}
    total = tokens * batch
    return {"engine": engine, "batch": batch, "tokens_per_row": tokens,
            "constrained_s_per_token": med["constrained"] / total,
            "unconstrained_s_per_token": med["unconstrained"] / total,
            "ratio": med["constrained"] / med["unconstrained"],
            "spread": {k: (max(v) - min(v)) / med[k] for k, v in walls.items()},
            "cpu_ratio": cpu_med["constrained"] / cpu_med["unconstrained"],
            "cpu_spread": {k: (max(v) - min(v)) / cpu_med[k] for k, v in cpus.items()},
            "compile_first_s": compile_first, "compile_cached_s": statistics.median(hits),
            "mask_s_per_token": statistics.median(masks) if masks else None,
            "repeats": repeats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="transformers,llamacpp")
    ap.add_argument("--batch-sizes", default="1,16")
    ap.add_argument("--model", default="llama-small", help="a test-model preset or a path")
    ap.add_argument("--tokens", type=int, default=96, help="tokens per row, both runs")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/structured.json")
    args = ap.parse_args()
    model = args.model if Path(args.model).exists() else str(build_test_model(args.model))
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.exists() else {"rows": []}
    for engine in args.engines.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            row = run(engine, model, batch, args.tokens, args.repeats)
            row.update(model=args.model, machine=f"{platform.machine()}, {os.cpu_count()} CPUs "
                       "(shared)", date=time.strftime("%Y-%m-%d"),
                       library=unillm.grammars.library_version())
            record["rows"] = [r for r in record["rows"]
                              if (r["engine"], r["batch"]) != (engine, batch)] + [row]
            mask = row["mask_s_per_token"]
            print(f"{engine:13} batch {batch:3}: constrained "
                  f"{row['constrained_s_per_token'] * 1e3:.3f} ms/token, unconstrained "
                  f"{row['unconstrained_s_per_token'] * 1e3:.3f} ms/token, ratio "
                  f"{row['ratio']:.3f} (spread {row['spread']['constrained']:.0%} / "
                  f"{row['spread']['unconstrained']:.0%}), CPU-time ratio {row['cpu_ratio']:.3f} "
                  f"(spread {row['cpu_spread']['constrained']:.0%} / "
                  f"{row['cpu_spread']['unconstrained']:.0%}); compile "
                  f"{(row['compile_first_s'] or 0) * 1e3:.1f} ms first, "
                  f"{row['compile_cached_s'] * 1e6:.0f} us cached; mask "
                  f"{'-' if mask is None else f'{mask * 1e6:.0f} us'}/token", flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(record, indent=2))
    print("wrote", out)


if __name__ == "__main__":
    import unillm.grammars

    main()
