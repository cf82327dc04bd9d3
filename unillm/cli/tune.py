"""`unillm tune`: search an engine's declared knobs for its best settings (Optuna TPE), then
measure the best against the engine's defaults, interleaved, and print the improvement."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from . import report
from .bench import ISOLATE, NAME, OUT, PLOTS, _guard, _needs
from .options import parse_pairs
from .progress import reporter, show_table


@_guard
def tune(
    engine: Annotated[str, typer.Option("--engine", "-e", help="engine name")],
    model: Annotated[str, typer.Option("--model", "-m", help="model path, hub id, or test:PRESET")],
    objective: Annotated[str, typer.Option(help="throughput (output tok/s, max) or latency (median e2e at batch 1, min)")] = "throughput",
    trials: Annotated[int, typer.Option(help="most trials (each one real measured run)")] = 20,
    timeout: Annotated[float | None, typer.Option(help="time budget for the search, seconds (checked between trials)")] = None,
    confirm: Annotated[int, typer.Option(help="repeats of best and defaults, interleaved, for the reported improvement")] = 5,
    knobs: Annotated[str | None, typer.Option(help="comma-separated knobs to search (default: all the engine declares)")] = None,
    option: Annotated[list[str], typer.Option("--option", "-o", help="fixed engine option for every run, defaults included, key=value")] = [],  # noqa: B006
    prompts: Annotated[int, typer.Option(help="latency: prompts of the shipped set per trial")] = 4,
    max_tokens: Annotated[int, typer.Option(help="latency: output tokens per request")] = 64,
    num_prompts: Annotated[int, typer.Option(help="throughput: prompts per trial")] = 32,
    input_len: Annotated[int, typer.Option(help="throughput: prompt length, tokens")] = 64,
    output_len: Annotated[int, typer.Option(help="throughput: output length, tokens")] = 64,
    seed: Annotated[int, typer.Option(help="seed of the sampler and the workload")] = 0,
    isolate: Annotated[bool, ISOLATE] = True,
    out: Annotated[str, OUT] = ".",
    name: Annotated[str | None, NAME] = None,
    plots: Annotated[bool, PLOTS] = True,
) -> None:
    """Find an engine's best settings for throughput or latency on this machine."""
    from unillm.bench.outputs import write_outputs
    from unillm.bench.tune import Workload, run_tune

    _needs(plots=plots, tune=True)
    workload = Workload(objective, prompts=prompts, max_tokens=max_tokens,
                        num_prompts=num_prompts, input_len=input_len, output_len=output_len,
                        seed=seed)
    with reporter() as rep:
        result = run_tune(
            engine, model, objective=objective, trials=trials, timeout=timeout, confirm=confirm,
            knobs=[k.strip() for k in knobs.split(",") if k.strip()] if knobs else None,
            options=parse_pairs(option, "--option"), workload=workload, seed=seed,
            isolate=isolate, reporter=rep,
        )
    p = result["parameters"]
    unit = p["unit"]
    space = []
    for k, knob in p["knobs"].items():
        rng = ", ".join(map(str, knob["choices"])) if knob["kind"] == "choice" else (
            f"{knob['low']:g} … {knob['high']:g}" + (" (log)" if knob["log"] else ""))
        space.append([k, knob["scope"], knob["kind"], rng])
    show_table("search space", ["knob", "scope", "kind", "range / choices"], space)

    best = result.get("best")
    conf = result.get("confirmation") or {}
    rows = []
    title, columns = (
        f"unillm tune {p['engine']}: {p['objective']} ({unit}), {len(result['trials'])} trials",
        ["configuration", "settings", "search value", f"confirm median ({conf.get('repeats', 0)}×)"],
    )
    default = result["default"]
    rows.append(["engine defaults", json.dumps({**default["options"], **default["call"]}),
                 report.num(default["value"], 4 if p["objective"] == "latency" else 1),
                 report.num(conf.get("default_median"), 4 if p["objective"] == "latency" else 1)])
    if best:
        rows.append([f"best (trial {best['trial']})", json.dumps({**best["options"], **best["call"]}),
                     report.num(best["value"], 4 if p["objective"] == "latency" else 1),
                     report.num(conf.get("best_median"), 4 if p["objective"] == "latency" else 1)])
    show_table(title, columns, rows)
    if conf.get("improvement") is not None:
        lo, hi = conf["ci90"]
        report.out.print(
            f"improvement over the defaults: [bold]{conf['improvement']:+.1%}[/] "
            f"(90% bootstrap interval of the paired ratios {lo:+.1%} … {hi:+.1%}; "
            f"run-to-run CV defaults {conf['cv']['default'] or 0:.1%}, best {conf['cv']['best'] or 0:.1%})"
        )
    elif conf.get("error"):
        # literally: an engine's error may hold brackets ("pip install 'unillm[bench]'")
        report.err.print(f"confirmation failed: {conf['error']}", style="red", markup=False,
                         highlight=False)
    load = result.get("load")
    if best and load:
        if result.get("recommended") == "defaults":
            report.out.print("[yellow]no setting found beats the engine's defaults on this machine: "
                             "keep them[/]")
        opts = ", ".join(f"{k}={v!r}" for k, v in load["options"].items())
        report.out.print(f"use: unillm.load({p['engine']!r}, MODEL{', ' + opts if opts else ''})")
        if load.get("call"):
            report.out.print("     and pass " + ", ".join(f"{k}={v}" for k, v in load["call"].items()) + " prompts per generate() call")
    report.files_written(write_outputs(result, out, name, plots=plots))
    if not result["ok"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)
