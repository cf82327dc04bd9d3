"""What a constraint costs: time per output token, constrained vs unconstrained.

For each engine and batch size: a constrained run (a JSON schema whose strings make the sample
long) and an unconstrained run of exactly as many tokens (ignore_eos, max_tokens = the
constrained run's token count), alternating, `--repeats` times each. Reports the median time
per output token of each and their ratio (target <= 1.15), the first compile time of the
constraint (a new schema each engine, so the cache does not hide it) and the cache hit's.

    python benchmarks/structured.py --engines transformers,llamacpp --batch-sizes 1,16
"""

from __future__ import annotations

import argparse
import json
import statistics
import uuid
from pathlib import Path

import unillm
from unillm.testing import build_test_model

OPTIONS = {
    "transformers": {"dtype": "float32"},
    "llamacpp": {"quantization": "f32", "kv_cache_type": "f32"},
    "vllm": {"dtype": "float32", "enforce_eager": True},
}
PROMPTS = ["A user record:", "JSON:", "The answer is", "def f(x):"]


def schema(tag: str) -> dict:
    """A schema the model fills for many tokens: a few bounded strings and numbers."""
    return {"type": "object", "additionalProperties": False, "title": tag,
            "required": ["name", "city", "bio", "age", "tags"],
            "properties": {"name": {"type": "string", "minLength": 8, "maxLength": 16},
                           "city": {"type": "string", "minLength": 8, "maxLength": 16},
                           "bio": {"type": "string", "minLength": 40, "maxLength": 60},
                           "age": {"type": "integer", "minimum": 0, "maximum": 120},
                           "tags": {"type": "array", "minItems": 3, "maxItems": 3,
                                    "items": {"type": "string", "minLength": 3, "maxLength": 8}}}}


def per_token(out: unillm.Completions) -> tuple[float, int]:
    tokens = sum(c.timing.output_tokens for c in out)
    return out.run.wall / max(tokens, 1), tokens


def run(engine: str, model: str, batch: int, repeats: int) -> dict:
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    with unillm.load(engine, model, **OPTIONS.get(engine, {})) as gen:
        constrained = unillm.SamplingParams(
            max_tokens=160, temperature=0.0,
            structured={"json_schema": schema(f"bench-{uuid.uuid4().hex[:8]}")})
        first = gen.generate(prompts, constrained)  # also the warm-up
        compile_first = first[0].timing.grammar_compile_s
        tokens = max(c.timing.output_tokens for c in first)
        free = unillm.SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)
        gen.generate(prompts, free)
        times: dict[str, list[float]] = {"constrained": [], "unconstrained": []}
        hits = []
        for _ in range(repeats):
            out = gen.generate(prompts, constrained)
            times["constrained"].append(per_token(out)[0])
            hits.append(out[0].timing.grammar_compile_s or 0.0)
            times["unconstrained"].append(per_token(gen.generate(prompts, free))[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    spread = {k: (max(v) - min(v)) / med[k] for k, v in times.items()}
    return {"engine": engine, "batch": batch, "tokens_per_row": tokens,
            "constrained_s_per_token": med["constrained"],
            "unconstrained_s_per_token": med["unconstrained"],
            "ratio": med["constrained"] / med["unconstrained"],
            "spread": spread, "compile_first_s": compile_first,
            "compile_cached_s": statistics.median(hits), "repeats": repeats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="transformers,llamacpp")
    ap.add_argument("--batch-sizes", default="1,16")
    ap.add_argument("--model", default="llama-small", help="a test-model preset or a path")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/results/structured.json")
    args = ap.parse_args()
    model = args.model if Path(args.model).exists() else str(build_test_model(args.model))
    rows = []
    for engine in args.engines.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            row = run(engine, model, batch, args.repeats)
            rows.append(row)
            print(f"{engine:13} batch {batch:3}: {row['tokens_per_row']} tokens/row, "
                  f"constrained {row['constrained_s_per_token'] * 1e3:.2f} ms/token, "
                  f"unconstrained {row['unconstrained_s_per_token'] * 1e3:.2f} ms/token, "
                  f"ratio {row['ratio']:.3f} (spread {row['spread']['constrained']:.0%} / "
                  f"{row['spread']['unconstrained']:.0%}); compile {(row['compile_first_s'] or 0) * 1e3:.1f} ms "
                  f"first, {row['compile_cached_s'] * 1e6:.0f} us cached", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"model": args.model, "rows": rows}, indent=2))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
