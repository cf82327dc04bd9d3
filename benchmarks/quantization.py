"""What each quantization method buys on this machine: memory, speed, closeness to float32.

For float32 and each method: load the test model through unillm (quantizing on load), warm up,
then generate `--max-tokens` greedy tokens at batch 1, `--repeats` times. The methods take turns
within each repeat (round-robin, rotated each round) so that a noisy shared machine weighs on
all of them alike. Reported per method: `gen.info["weight_bytes"]` (after warm-up: CPU kernels
repack at the first forward pass) and its ratio to float32, the median tokens/s (from
`Completion.timing`), the load (quantization) time, and the next-token top-1 agreement with
float32 over 200 positions of a fixed text (tests/engines/test_quantization.py's text).

    python benchmarks/quantization.py                      # llama-quant, every method
    python benchmarks/quantization.py --methods nf4,int8 --preset llama-small --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import unillm  # noqa: E402
from unillm.testing import build_test_model  # noqa: E402

ALL = ["float32", "nf4", "fp4", "int8", "gptq", "torchao-int8"]
PROMPT = "The quick brown fox jumps over the lazy dog"


def quality_text() -> str:
    from tests.engines.test_quantization import QUALITY_TEXT

    return QUALITY_TEXT


def logits(gen, ids):
    import torch

    with torch.inference_mode():
        return gen.engine.model_obj(torch.tensor([ids])).logits[0].float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=",".join(ALL), help="float32 and/or quantization methods")
    ap.add_argument("--preset", default="llama-quant", help="test model preset")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--group-size", type=int, help="gptq group size (default 128; llama-small "
                    "needs 32: its 1376-wide MLP input is not a multiple of 128)")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()

    model = str(build_test_model(args.preset))
    methods = [m for m in args.methods.split(",") if m]
    params = unillm.SamplingParams(max_tokens=args.max_tokens, temperature=0.0, ignore_eos=True)
    gens, load_s = {}, {}
    for m in ["float32", *[m for m in methods if m != "float32"]]:
        options = {"dtype": "float32", "threads": args.threads}
        if m != "float32":
            options["quantization"] = m
            if m == "gptq" and args.group_size:
                options["quantization"] = {"method": m, "group_size": args.group_size}
        start = time.perf_counter()
        gens[m] = unillm.load("transformers", model, **options)
        load_s[m] = time.perf_counter() - start
        gens[m].generate(PROMPT, params)  # warm-up: first-call repacking, allocator
    ids = gens["float32"].tokenizer.encode(quality_text())[:201]
    ref = logits(gens["float32"], ids)[:200]

    speeds: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(args.repeats):
        order = methods[r % len(methods):] + methods[:r % len(methods)]
        for m in order:
            out = gens[m].generate(PROMPT, params)
            speeds[m].append(out.timing.output_tokens / out.timing.e2e)

    full = gens["float32"].info["weight_bytes"]
    rows = []
    for m in methods:
        info = gens[m].info
        agree = (logits(gens[m], ids)[:200].argmax(-1) == ref.argmax(-1)).float().mean().item()
        rows.append({
            "method": m, "weight_bytes": info["weight_bytes"],
            "vs_float32": full / info["weight_bytes"],
            "bits_per_parameter": info["bits_per_parameter"],
            "tok_per_s_batch1": statistics.median(speeds[m]),
            "load_s": load_s[m], "top1_agreement": agree,
        })
    for gen in gens.values():
        gen.close()

    print(f"model {args.preset}, {args.max_tokens} greedy tokens at batch 1, median of "
          f"{args.repeats}, {args.threads} threads")
    print("| method | weight bytes | vs float32 | bits/param | tok/s (batch 1) | load s | "
          "top-1 agreement |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['method']} | {row['weight_bytes']:,} | {row['vs_float32']:.2f}x | "
              f"{row['bits_per_parameter']:.2f} | {row['tok_per_s_batch1']:.0f} | "
              f"{row['load_s']:.1f} | {row['top1_agreement']:.1%} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
