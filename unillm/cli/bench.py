"""`unillm bench latency | throughput | serve | quality | compare`: one command per kind of
benchmark (quality's lives in bench_quality.py).

Each writes NAME.json, NAME.csv, NAME-requests.csv and NAME-*.png into --out (the current
directory by default) and exits 1 when any contestant failed or produced the wrong number of
tokens, so a CI job cannot pass on an unfair comparison.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from . import report
from .bench_common import ENGINES_HELP, _finish, _guard, _needs, _specs
from .options import parse_pairs
from .progress import reporter, show_table

OUT = typer.Option("--out", help="directory for the JSON, CSV and PNG files (created if needed)")
NAME = typer.Option("--name", help="file stem (default: KIND-YYYYmmdd-HHMMSS)")
PLOTS = typer.Option("--plots/--no-plots", help="write PNG plots")
INTERLEAVE = typer.Option(
    "--interleave/--sequential",
    help="load every engine first and alternate rounds between them (fairer on a busy machine), "
         "or measure one engine at a time (one model in memory at a time)",
)
ISOLATE = typer.Option(
    "--isolate/--in-process",
    help="measure each engine in its own process (own peak memory, no shared thread settings)",
)


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of integers",
                                 param_hint=what) from None
    if not values or min(values) < 1:
        raise typer.BadParameter("give integers >= 1", param_hint=what)
    return values


def latency_workload(full: bool, **given: int | None) -> dict[str, Any]:
    """--max-tokens, --prompts, --warmup, --repeats as given, the rest from the quick default
    workload or, with --full, the recorded one."""
    from unillm.bench.latency import FULL_WORKLOAD, QUICK_WORKLOAD

    base = FULL_WORKLOAD if full else QUICK_WORKLOAD
    return {k: given[k] if given.get(k) is not None else v for k, v in base.items()}


def latency_rows(result: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    """The latency table: title, columns, one row per engine."""
    p = result["parameters"]
    title = (f"unillm bench latency: batch 1, {p['max_tokens']} tokens, {p['prompts']} prompts × "
             f"{p['repeats']} repeats ({p['api']})")
    columns = ["engine", "status", "tokens", "tok/s p50", "TTFT p50 ms", "TTFT p99 ms",
               "TPOT p50 ms", "TPOT p99 ms", "ITL p99 ms", "e2e p50 ms", "e2e p99 ms",
               "peak RSS MiB", "load s"]
    rows = []
    for run in result["runs"]:
        point = run["points"][0] if run["points"] else {}
        m = point.get("metrics") or {}
        rows.append([
            run["label"], run["status"], report.token_check(run, point),
            report.num(report.stat(m.get("tokens_per_s"), "median"), 1),
            report.ms(report.stat(m.get("ttft"), "median")), report.ms(report.stat(m.get("ttft"), "p99")),
            report.ms(report.stat(m.get("tpot"), "median"), 2), report.ms(report.stat(m.get("tpot"), "p99"), 2),
            report.ms(report.stat(m.get("itl"), "p99"), 2),
            report.ms(report.stat(m.get("e2e"), "median")), report.ms(report.stat(m.get("e2e"), "p99")),
            report.mib((run.get("peak_memory") or {}).get("rss_bytes")),
            report.num(run.get("load_s"), 1),
        ])
    return title, columns, rows


@_guard
def latency(
    model: Annotated[str, typer.Option("--model", "-m", help="model path, hub id, or test:PRESET")],
    engines: Annotated[str | None, typer.Option("--engines", "-e", help=ENGINES_HELP)] = None,
    full: Annotated[bool, typer.Option("--full", help="the recorded workload (docs/bench.md): all 16 prompts × 3 repeats, 200 tokens, 2 warm-ups; default: a quick one (4 prompts × 2 repeats, 64 tokens, 1 warm-up)")] = False,
    max_tokens: Annotated[int | None, typer.Option(help="output tokens per request, enforced on every engine [default: 64; --full: 200]", show_default=False)] = None,
    prompts: Annotated[int | None, typer.Option(help="use the first N prompts of the shipped set [default: 4; --full: all 16]", show_default=False)] = None,
    warmup: Annotated[int | None, typer.Option(help="warm-up requests per engine (not measured) [default: 1; --full: 2]", show_default=False)] = None,
    repeats: Annotated[int | None, typer.Option(help="passes over the prompt set [default: 2; --full: 3]", show_default=False)] = None,
    api: Annotated[str, typer.Option(help="stream (TTFT as a caller sees it) or generate")] = "stream",
    param: Annotated[list[str], typer.Option("--param", "-p", help="extra SamplingParams field, key=value")] = [],  # noqa: B006
    interleave: Annotated[bool, INTERLEAVE] = False,
    isolate: Annotated[bool, ISOLATE] = True,
    out: Annotated[str, OUT] = ".",
    name: Annotated[str | None, NAME] = None,
    plots: Annotated[bool, PLOTS] = True,
) -> None:
    """Batch-1 latency: every engine, the shipped prompts, exactly --max-tokens tokens each."""
    from unillm.bench.latency import run_latency

    _needs(plots=plots)
    specs = _specs(engines)
    work = latency_workload(full, max_tokens=max_tokens, prompts=prompts, warmup=warmup,
                            repeats=repeats)
    with reporter() as rep:
        rep.message(f"{'full' if full else 'quick'} workload: {work['prompts'] or 'all'} prompts × "
                    f"{work['repeats']} repeats, {work['max_tokens']} tokens, {work['warmup']} "
                    f"warm-up(s), on {len(specs)} engine(s)"
                    + ("" if full else " (--full: the recorded workload)"))
        result = run_latency(
            specs, model, **work, api=api, params=parse_pairs(param, "--param"),
            interleave=interleave, isolate=isolate, reporter=rep,
        )
    show_table(*latency_rows(result))
    _finish(result, out, name, plots)


@_guard
def throughput(
    model: Annotated[str, typer.Option("--model", "-m", help="model path, hub id, or test:PRESET")],
    engines: Annotated[str | None, typer.Option("--engines", "-e", help=ENGINES_HELP)] = None,
    num_prompts: Annotated[int, typer.Option(help="K: prompts per run")] = 32,
    input_len: Annotated[int, typer.Option(help="mean prompt length, tokens")] = 128,
    input_spread: Annotated[float, typer.Option(help="prompt lengths uniform in mean×(1±spread)")] = 0.0,
    output_len: Annotated[int, typer.Option(help="mean output length, tokens (enforced per request)")] = 128,
    output_spread: Annotated[float, typer.Option(help="output lengths uniform in mean×(1±spread)")] = 0.0,
    batch_sizes: Annotated[str, typer.Option(help="comma-separated prompts per generate call")] = "1,8,32",
    repeats: Annotated[int, typer.Option(help="runs per batch size (the median is reported)")] = 2,
    seed: Annotated[int, typer.Option(help="seed of the lengths and prompt offsets")] = 0,
    param: Annotated[list[str], typer.Option("--param", "-p", help="extra SamplingParams field, key=value")] = [],  # noqa: B006
    interleave: Annotated[bool, INTERLEAVE] = False,
    isolate: Annotated[bool, ISOLATE] = True,
    out: Annotated[str, OUT] = ".",
    name: Annotated[str | None, NAME] = None,
    plots: Annotated[bool, PLOTS] = True,
) -> None:
    """Offline throughput: K prompts of chosen lengths, at each batch size."""
    from unillm.bench.prompts import LengthDist
    from unillm.bench.throughput import run_throughput

    _needs(plots=plots)
    specs = _specs(engines)
    sizes = _ints(batch_sizes, "--batch-sizes")
    with reporter() as rep:
        result = run_throughput(
            specs, model, num_prompts=num_prompts, input_len=LengthDist(input_len, input_spread),
            output_len=LengthDist(output_len, output_spread), batch_sizes=sizes, repeats=repeats,
            seed=seed, params=parse_pairs(param, "--param"), interleave=interleave,
            isolate=isolate, reporter=rep,
        )
    rows: list[list[str]] = []
    title, columns = (
        f"unillm bench throughput: {num_prompts} prompts, in {input_len}±{input_spread:.0%}, "
        f"out {output_len}±{output_spread:.0%} tokens (median of {repeats})",
        ["engine", "batch", "status", "tokens", "output tok/s", "total tok/s", "req/s",
         "e2e p50 ms", "peak RSS MiB"],
    )
    for run in result["runs"]:
        for point in run["points"] or [{}]:
            fig = point.get("run") or {}
            rows.append([
                run["label"], str(point.get("batch_size", "-")), run["status"],
                report.token_check(run, point),
                report.num(report.stat(fig.get("output_throughput"), "median")),
                report.num(report.stat(fig.get("total_throughput"), "median")),
                report.num(report.stat(fig.get("request_throughput"), "median"), 2),
                report.ms(report.stat((point.get("metrics") or {}).get("e2e"), "median")),
                report.mib((run.get("peak_memory") or {}).get("rss_bytes")),
            ])
    show_table(title, columns, rows, keys=2)
    _finish(result, out, name, plots)


@_guard
def serve(
    url: Annotated[list[str], typer.Option("--url", help="server base URL (http://host:port or .../v1); repeat to compare servers")],
    label: Annotated[list[str], typer.Option("--label", help="name of each --url in results")] = [],  # noqa: B006
    served_model: Annotated[str | None, typer.Option("--served-model", help="model name to request (default: the server's first)")] = None,
    concurrency: Annotated[str, typer.Option(help="comma-separated levels of concurrent requests")] = "1,8,32,128,256",
    num_prompts: Annotated[int | None, typer.Option(help="requests per level (default: 2×level, at least 16)")] = None,
    max_tokens: Annotated[int, typer.Option(help="output tokens per request")] = 128,
    ignore_eos: Annotated[bool, typer.Option("--ignore-eos/--allow-eos", help="ask for exactly --max-tokens tokens (ignore_eos) and check the server's counts")] = True,
    rate: Annotated[float | None, typer.Option(help="arrivals at this many requests/s (default: all at once); see --burstiness")] = None,
    rates: Annotated[str | None, typer.Option(help="sweep offered load instead of concurrency: comma-separated requests/s (e.g. 2,4,8,16); at most max(--concurrency) in flight; plots latency against load with the saturation point")] = None,
    burstiness: Annotated[float, typer.Option(help="arrival gaps are gamma-distributed with this shape, as vllm bench serve's --burstiness: 1 = Poisson, < 1 burstier, > 1 more regular")] = 1.0,
    ttft_slo: Annotated[float | None, typer.Option("--ttft-slo", help="goodput limit on TTFT, ms")] = None,
    tpot_slo: Annotated[float | None, typer.Option("--tpot-slo", help="goodput limit on TPOT, ms")] = None,
    e2e_slo: Annotated[float | None, typer.Option("--e2e-slo", help="goodput limit on e2e latency, ms")] = None,
    endpoint: Annotated[str, typer.Option(help="completions or chat")] = "completions",
    input_len: Annotated[int | None, typer.Option(help="synthetic prompts of this many tokens (needs --tokenizer)")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="local tokenizer/model directory for --input-len")] = None,
    warmup: Annotated[int, typer.Option(help="warm-up requests before the sweep")] = 2,
    extra: Annotated[list[str], typer.Option("--extra", help="extra request body field, key=value")] = [],  # noqa: B006
    seed: Annotated[int, typer.Option(help="seed of the arrival times")] = 0,
    out: Annotated[str, OUT] = ".",
    name: Annotated[str | None, NAME] = None,
    plots: Annotated[bool, PLOTS] = True,
) -> None:
    """Concurrency sweep against OpenAI-compatible servers (unillm serve, vLLM, llama.cpp, ...)."""
    from unillm.bench.serve import SLO, run_serve

    def s(v: float | None) -> float | None:
        return None if v is None else v / 1000.0

    _needs(plots=plots)
    levels = _ints(concurrency, "--concurrency")
    sweep = _floats(rates, "--rates") if rates is not None else None
    with reporter() as rep:
        result = run_serve(
            url, model=served_model, labels=label or None, concurrency=levels,
            num_prompts=num_prompts, max_tokens=max_tokens, ignore_eos=ignore_eos, rate=rate,
            rates=sweep, burstiness=burstiness,
            slo=SLO(s(ttft_slo), s(tpot_slo), s(e2e_slo)), endpoint=endpoint,
            input_len=input_len, tokenizer=tokenizer, warmup=warmup,
            extra=parse_pairs(extra, "--extra"), seed=seed, reporter=rep,
        )
    shape = "Poisson" if burstiness == 1.0 else f"gamma (burstiness {burstiness:g})"
    arrivals = (f"{shape}, swept over {rates} req/s" if sweep else
                f"{shape} {rate} req/s" if rate else "all at once")
    rows: list[list[str]] = []
    title, columns = (
        f"unillm bench serve: {max_tokens} output tokens, arrivals {arrivals}",
        ["server", "req/s offered" if sweep else "conc.", "done/failed", "tokens",
         "output tok/s", "req/s", "goodput req/s", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms",
         "ITL p99 ms", "TPOT p50 ms"],
    )
    for run in result["runs"]:
        for point in run["points"] or [{}]:
            m = point.get("metrics") or {}
            fig = point.get("run") or {}
            x = point.get("offered_rate" if sweep else "concurrency", "-")
            rows.append([
                run["label"], f"{x:g}" if isinstance(x, float) else str(x),
                f"{point.get('completed', 0)}/{point.get('failed', 0)}",
                report.token_check(run, point), report.num(fig.get("output_throughput")),
                report.num(fig.get("request_throughput"), 2), report.num(point.get("goodput"), 2),
                report.ms(report.stat(m.get("ttft"), "median")), report.ms(report.stat(m.get("ttft"), "p99")),
                report.ms(report.stat(m.get("itl"), "median"), 2), report.ms(report.stat(m.get("itl"), "p99"), 2),
                report.ms(report.stat(m.get("tpot"), "median"), 2),
            ])
    show_table(title, columns, rows, keys=2)
    for run in result["runs"]:
        sat = run.get("saturation")
        if sat:
            where = (f"saturates at {sat['saturated_at']:g} req/s offered" if sat["saturated_at"]
                     else "kept up with every rate")
            print(f"{run['label']}: {where} (served < {sat['keep_up']:.0%} of it); at most "
                  f"{sat['max_served']:.2f} req/s served")
    _finish(result, out, name, plots)


def _floats(text: str, what: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of numbers",
                                 param_hint=what) from None
    if not values or min(values) <= 0:
        raise typer.BadParameter("give numbers > 0", param_hint=what)
    return values


@_guard
def compare(
    files: Annotated[list[str], typer.Argument(help="a.json b.json (b against a), or one file with --baseline")],
    baseline: Annotated[str | None, typer.Option(help="with one file: the run the others are compared with (default: the first)")] = None,
    json_out: Annotated[str | None, typer.Option("--json", help="also write the rows to this JSON file")] = None,
) -> None:
    """Ratios between two results (b / a), or between the runs of one result."""
    import json

    from unillm.bench.compare import compare_results
    from unillm.bench.results import load_result

    if not 1 <= len(files) <= 2:
        raise typer.BadParameter("give one or two result files", param_hint="FILES")
    a = load_result(files[0])
    b = load_result(files[1]) if len(files) == 2 else None
    rows = compare_results(a, b, baseline)
    lines: list[list[str]] = []
    title, columns = (
        f"unillm bench compare ({a['kind']}): ratio = b / a",
        ["a", "b", "point", "metric", "a", "b", "ratio b/a", "better", "verdict"],
    )
    colours = {"b better": "green", "a better": "red", "same": "dim"}
    for row in rows:
        point = next((f"{k}={row[k]}" for k in ("batch_size", "concurrency") if k in row), "-")
        seconds = row["unit"] == "s"
        fmt = (lambda v: report.ms(v, 2) + " ms") if seconds else (
            (lambda v: report.mib(v) + " MiB") if row["unit"] == "bytes" else (lambda v: report.num(v, 1)))
        verdict = row["verdict"]
        lines.append([row["a"], row["b"], point, row["metric"], fmt(row["a_value"]),
                     fmt(row["b_value"]), "-" if row["ratio"] is None else f"{row['ratio']:.3f}",
                     row["better"], f"[{colours.get(verdict, 'white')}]{verdict}[/]"])
    show_table(title, columns, lines, keys=4)
    if json_out:
        with open(json_out, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)


def register(app: typer.Typer) -> None:
    bench = typer.Typer(
        help="Benchmark engines fairly (fixed token counts, checked) and servers under load.",
        no_args_is_help=True,
    )
    bench.command("latency")(latency)
    bench.command("throughput")(throughput)
    bench.command("serve")(serve)
    bench.command("compare")(compare)
    from .bench_quality import quality

    bench.command("quality")(_guard(quality))
    app.add_typer(bench, name="bench")
