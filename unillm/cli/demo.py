"""`unillm demo`: every installed engine on one locally built model, side by side.

Shows the point of unillm in one screen: the same SamplingParams on every engine, the same
timing figures, and (greedy, float32) the same tokens.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

DEMO_PROMPTS = [
    "The quick brown fox",
    "def fibonacci(n):",
    "Le café est très chaud, 東京",
]

# Options that make an engine run the float32 checkpoint as-is, so greedy tokens can match;
# and, for GPTQ, a group size that divides the tiny demo model's 64-wide layers (its default,
# 128, does not).
DEMO_OPTIONS = {
    "transformers": {"dtype": "float32"},
    "ctranslate2": {"compute_type": "float32"},
    "vllm": {"dtype": "float32"},
    "llamacpp": {"quantization": "f32"},
    "gptq": {"quantization": {"method": "gptq", "group_size": 32}},
}


def run_demo(preset: str, max_tokens: int) -> int:
    import unillm
    from unillm.testing import build_test_model

    console = Console()
    with console.status(f"building the {preset} test model"):
        model = build_test_model(preset)
    console.print(f"model: {model}")
    params = unillm.SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    console.print(f"params: {params!r}\n")

    installed = [e for e in unillm.engines() if e.status == "installed"]
    local = [e for e in installed if e.engine_class is not None and e.engine_class.local]
    order = sorted(local, key=lambda e: (e.name != "transformers", e.name))

    table = Table(title=f"unillm demo: {len(DEMO_PROMPTS)} prompts, {max_tokens} tokens each, greedy")
    for col in ("engine", "load s", "tok/s batch", "TTFT ms", "TPOT ms", "= transformers"):
        table.add_column(col, overflow="fold")
    reference = None
    failures = 0
    for info in order:
        try:
            t0 = time.perf_counter()
            with console.status(f"{info.name}: loading"):
                gen = unillm.load(info.name, model, **DEMO_OPTIONS.get(info.name, {}))
            load_s = time.perf_counter() - t0
            with gen, console.status(f"{info.name}: generating"):
                batch = gen.generate(DEMO_PROMPTS, params)
                stream = gen.stream(DEMO_PROMPTS[0], params)
                for _ in stream:
                    pass
            ids = [c.token_ids for c in batch]
            if info.name == "transformers":
                reference = ids
            same = "-" if reference is None or info.name == "transformers" else (
                "yes" if ids == reference else "no"
            )
            t = stream.completion.timing
            table.add_row(
                info.name, f"{load_s:.1f}", f"{batch.run.output_throughput:,.0f}",
                f"{t.ttft * 1000:.1f}", f"{t.tpot * 1000:.2f}", same,
            )
        except Exception as exc:  # noqa: BLE001 - one engine's failure is a row, not a crash
            failures += 1
            table.add_row(info.name, "-", "-", "-", "-", f"[red]{type(exc).__name__}: {exc}[/]")
    console.print(table)
    console.print("TTFT/TPOT: one streamed prompt; tok/s: the 3 prompts as one batch.")
    skipped = [e for e in unillm.engines() if e not in installed or e not in local]
    for e in skipped:
        reason = e.error or ("talks to a server: see docs/engines" if e.status == "installed" else "")
        console.print(f"[dim]not run: {e.name} ({e.status}) {reason}[/]")
    return 1 if failures else 0
