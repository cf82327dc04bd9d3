"""`unillm demo`: every installed engine on one locally built model, side by side.

Shows the point of unillm in one screen: the same SamplingParams on every engine, the same
timing figures, and (greedy, float32) the same tokens.
"""

from __future__ import annotations

import importlib
import statistics
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table
from rich.text import Text

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


def run_demo(preset: str, max_tokens: int, repeats: int = 3) -> int:
    import unillm

    console = Console()
    with console.status(f"building the {preset} test model"):
        model = build_model_elsewhere(preset)
    console.print(f"model: {model}", markup=False)
    params = unillm.SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    console.print(f"params: {params!r}\n", markup=False)

    installed = [e for e in unillm.engines() if e.status == "installed"]
    local = [e for e in installed if e.engine_class is not None and e.engine_class.local]
    order = sorted(local, key=lambda e: (e.name != "transformers", e.name))

    table = Table(title=f"unillm demo: {len(DEMO_PROMPTS)} prompts, {max_tokens} tokens each, "
                        f"greedy, median of {repeats} runs after a warm-up")
    for col in ("engine", "load s", "tok/s batch", "TTFT ms", "TPOT ms", "matches"):
        table.add_column(col, overflow="fold")
    reference = None
    failures = 0
    imports: dict[str, float] = {}
    for info in order:
        try:
            with console.status(f"{info.name}: importing {', '.join(info.requires) or 'nothing'}"):
                imports.update(import_times(info.requires, imports))
            t0 = time.perf_counter()
            with console.status(f"{info.name}: loading"):
                gen = unillm.load(info.name, model, **DEMO_OPTIONS.get(info.name, {}))
            load_s = time.perf_counter() - t0
            throughputs, ttfts, tpots = [], [], []
            with gen, console.status(f"{info.name}: generating"):
                # One unmeasured pass first: the first call pays for kernel compilation and
                # allocator warm-up (gptq's first batch ran 5x slower than the next ones).
                gen.generate(DEMO_PROMPTS, params)
                for _ in gen.stream(DEMO_PROMPTS[0], params):
                    pass
                for _ in range(repeats):
                    batch = gen.generate(DEMO_PROMPTS, params)
                    throughputs.append(batch.run.output_throughput)
                    stream = gen.stream(DEMO_PROMPTS[0], params)
                    for _ in stream:
                        pass
                    ttfts.append(stream.completion.timing.ttft * 1000)
                    tpots.append(stream.completion.timing.tpot * 1000)
            ids = [c.token_ids for c in batch]
            if info.name == "transformers":
                reference = ids
            same = "-" if reference is None or info.name == "transformers" else (
                "yes" if ids == reference else "no"
            )
            table.add_row(info.name, f"{load_s:.1f}", spread(throughputs, "{:,.0f}"),
                          spread(ttfts, "{:.1f}"), spread(tpots, "{:.2f}"), same)
        except Exception as exc:  # noqa: BLE001 - one engine's failure is a row, not a crash
            failures += 1
            table.add_row(info.name, "-", "-", "-", "-", Text(f"{type(exc).__name__}: {exc}", style="red"))
    console.print(table)
    console.print("TTFT/TPOT: one streamed prompt; tok/s: the 3 prompts as one batch. ±: half "
                  "the range between the slowest and fastest run, as a share of the median. "
                  "matches: the same greedy tokens as transformers.")
    if imports:
        console.print("load s excludes importing the engines' libraries, done first: "
                      + ", ".join(f"{m} {s:.1f} s" for m, s in imports.items()), markup=False)
    skipped = [e for e in unillm.engines() if e not in installed or e not in local]
    for e in skipped:
        reason = e.error or ("talks to a server: see docs/engines" if e.status == "installed" else "")
        console.print(f"not run: {e.name} ({e.status}) {reason}", style="dim", markup=False)
    return 1 if failures else 0


def build_model_elsewhere(preset: str) -> str:
    """Build (or find) the test model in a child process and return its directory.

    Building in this process imported transformers' modelling code before the first engine was
    timed, so on a first run transformers' "load s" read 0.0 and on every later run (model
    cached, nothing built) 3.0. In a child, this process starts every run in the same state.
    """
    out = subprocess.run([sys.executable, "-m", "unillm", "build-model", preset],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"building test model {preset!r} failed:\n{out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


def import_times(modules: tuple[str, ...], done: dict[str, float]) -> dict[str, float]:
    """Import each module not yet imported, timing it: the first engine to need torch would
    otherwise pay for it in its "load s" and the next ones would not."""
    times = {}
    for name in modules:
        if name in done or name in sys.modules:
            continue
        t0 = time.perf_counter()
        importlib.import_module(name)
        times[name] = time.perf_counter() - t0
    return times


def spread(values: list[float], fmt: str) -> str:
    """``median ±p%``: how far one run may sit from the figure shown, so two engines whose
    figures differ by less than their spread are not read as different."""
    mid = statistics.median(values)
    if len(values) < 2 or not mid:
        return fmt.format(mid)
    half_range = (max(values) - min(values)) / 2
    return f"{fmt.format(mid)} ±{100 * half_range / mid:.0f}%"
