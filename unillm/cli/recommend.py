"""`unillm recommend`: the fastest engine and settings whose quality stays within a bound of
float32, measured on this machine and model (unillm.recommend), printed as the
`unillm.load(...)` line to use."""

from __future__ import annotations

from typing import Annotated

import typer

from .messages import fail


def recommend_command(
    model: Annotated[str, typer.Option("--model", "-m", help="model path, hub id, or test:PRESET")],
    objective: Annotated[str, typer.Option(help="latency (batch-1 tokens/s) or throughput (best batch)")] = "latency",
    max_gap: Annotated[float, typer.Option(help="largest perplexity difference from float32, relative (0.01 = 1 %)")] = 0.01,
    min_agreement: Annotated[float | None, typer.Option(help="also require this share of the reference's greedy tokens (0-1)")] = None,
    engines: Annotated[str | None, typer.Option("--engines", "-e", help="candidates, NAME[:KEY=VALUE],... (default: every installed local engine's usual settings)")] = None,
    refresh: Annotated[bool, typer.Option(help="measure again instead of reading the cache")] = False,
) -> None:
    """Recommend an engine and settings for this machine and model (measured, cached)."""
    from unillm import UnillmError
    from unillm.recommend import recommend

    from .models import resolve_cli_model
    from .progress import reporter, show_table
    from .report import num

    try:
        resolved = resolve_cli_model(model)
        with reporter() as rep:
            choice = recommend(model, objective=objective, max_gap=max_gap,
                               min_agreement=min_agreement, engines=engines, refresh=refresh,
                               reporter=rep)
    except (UnillmError, ValueError) as exc:
        raise fail(exc) from None
    rows = [[r["label"], r["status"], num(r["tokens_per_s"], 1),
             "-" if r["perplexity_gap"] is None else f"{r['perplexity_gap']:+.2%}",
             "-" if r["agreement"] is None else f"{r['agreement']:.0%}",
             "yes" if r["qualifies"] else "no", "<- chosen" if r["label"] == choice.label else ""]
            for r in choice.candidates]
    show_table(f"unillm recommend ({objective}, perplexity within {max_gap:.1%} of float32)",
               ["candidate", "status", "tok/s p50", "ppl gap", "agreement", "qualifies", ""],
               rows)
    where = f" at batch size {choice.batch_size}" if choice.batch_size else ""
    typer.echo(f"# {choice.label}: {choice.speed:,.1f} output tokens/s{where}, perplexity "
               f"{choice.perplexity_gap:+.2%} from float32 (measured: {', '.join(choice.results)})")
    typer.echo(f"import unillm\ngen = {choice.load_line(resolved)}")


def register(app: typer.Typer) -> None:
    app.command("recommend")(recommend_command)
