"""`unillm bench quality`: perplexity, agreement with a reference and speed, per engine and
quantization, with the speed-against-quality plot (unillm.bench.quality)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from . import report
from .progress import reporter, show_table


def quality_table(result: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    from unillm.bench.quality_outputs import pareto_labels, speed

    p = result["parameters"]
    title = (f"unillm bench quality: perplexity on {p['text_chars']} characters, agreement with "
             f"{p['reference']} on {p['prompts']} prompts × {p['max_tokens']} greedy tokens")
    tasks = list(p.get("tasks") or ())
    columns = ["engine", "status", "tok/s p50", "perplexity", "gap vs ref", "mean |Δ logprob|",
               "agreement", "exact", *tasks, "Pareto"]
    front = pareto_labels(result)
    rows = []
    for run in result["runs"]:
        point = run["points"][0] if run["points"] else {}
        q = point.get("quality") or {}
        gap = q.get("perplexity_gap")
        metrics = []
        for task in tasks:
            figures = (q.get("tasks") or {}).get(task) or {}
            metrics.append(", ".join(f"{k.split(',')[0]} {v:.3f}" for k, v in figures.items()
                                     if isinstance(v, (int, float))) or "-")
        rows.append([
            run["label"] + (" (ref)" if run.get("reference") else ""), run["status"],
            report.num(speed(point), 1), report.num(q.get("perplexity"), 2),
            "-" if gap is None else f"{gap:+.2%}",
            report.num(q.get("mean_abs_logprob_diff"), 4),
            "-" if q.get("agreement") is None else f"{q['agreement']:.0%}",
            "-" if q.get("exact") is None else f"{q['exact']:.0%}", *metrics,
            "yes" if run["label"] in front else "",
        ])
    return title, columns, rows


def quality(
    model: Annotated[str, typer.Option("--model", "-m", help="model path, hub id, or test:PRESET")],
    engines: Annotated[str | None, typer.Option("--engines", "-e", help="comma-separated NAME[:KEY=VALUE]... (e.g. bnb,ctranslate2:compute_type=int8); default: every installed local engine")] = None,
    reference: Annotated[str, typer.Option(help="the engine whose perplexity and greedy output the others are compared with")] = "transformers:dtype=float32:label=transformers-float32",
    prompts: Annotated[int, typer.Option(help="prompts of the shipped set for agreement and speed")] = 4,
    max_tokens: Annotated[int, typer.Option(help="greedy tokens per prompt (agreement and speed)")] = 32,
    text: Annotated[str | None, typer.Option(help="a text file to measure perplexity on (default: the shipped corpus)")] = None,
    tasks: Annotated[str | None, typer.Option(help="comma-separated lm-eval tasks to run too (e.g. unillm_mc; needs unillm[eval])")] = None,
    task_limit: Annotated[int | None, typer.Option(help="documents per lm-eval task")] = None,
    speed_repeats: Annotated[int, typer.Option(help="passes over the prompts for speed")] = 1,
    interleave: Annotated[bool, typer.Option("--interleave/--sequential", help="load every engine first and alternate rounds")] = False,
    isolate: Annotated[bool, typer.Option("--isolate/--in-process", help="each engine in its own process")] = True,
    out: Annotated[str, typer.Option("--out", help="directory for the JSON, CSV and PNG files")] = ".",
    name: Annotated[str | None, typer.Option("--name", help="file stem (default: quality-YYYYmmdd-HHMMSS)")] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="write the PNG plot")] = True,
) -> None:
    """Quality next to speed: perplexity, agreement with a reference, optional lm-eval tasks,
    and batch-1 speed of every engine, with a speed-against-perplexity plot (Pareto front)."""
    from pathlib import Path

    from unillm.bench.quality import run_quality
    from unillm.bench.spec import EngineSpec

    from .bench_common import _finish, _needs, _specs

    _needs(plots=plots)
    specs = _specs(engines)
    try:
        ref = EngineSpec.parse(reference)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--reference") from None
    body = Path(text).read_text("utf-8") if text else None
    with reporter() as rep:
        result = run_quality(
            specs, model, reference=ref, text=body, prompts=prompts, max_tokens=max_tokens,
            tasks=[t for t in (tasks or "").split(",") if t], task_limit=task_limit,
            speed_repeats=speed_repeats, interleave=interleave, isolate=isolate, reporter=rep)
    show_table(*quality_table(result))
    _finish(result, out, name, plots)
