"""What every `unillm bench` command shares: its engine list, its dependency check before any
work, writing its files and exit status, and one-line errors (bench.py, bench_quality.py)."""

from __future__ import annotations

from typing import Any

import typer

from . import report

ENGINES_HELP = ("comma-separated NAME[:KEY=VALUE]... (e.g. transformers,ctranslate2:compute_type=int8; "
                "special keys: label, model); default: every installed local engine")


def _specs(engines: str | None):
    from unillm.bench.spec import EngineSpec, installed_local_engines

    try:
        specs = EngineSpec.parse_list(engines) if engines else installed_local_engines()
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--engines") from None
    if not specs:
        raise typer.BadParameter("no engine is installed; see `unillm engines`", param_hint="--engines")
    return specs


def _needs(plots: bool = False, tune: bool = False) -> None:
    """Check the optional packages this command will need, before any work starts (a missing
    one is a one-line error naming the install command, exit code 2)."""
    from unillm.bench.deps import require_plots, require_tune

    if tune:
        require_tune()
    if plots:
        require_plots()


def _finish(result: dict[str, Any], out: str, name: str | None, plots: bool) -> None:
    from unillm.bench.outputs import write_outputs

    report.failures(result)
    report.files_written(write_outputs(result, out, name, plots=plots))
    if not result["ok"]:
        report.err.print("[red]not every contestant ran cleanly (see status and tokens)[/]")
        raise typer.Exit(1)


def _guard(fn):
    """Turn bad arguments (ValueError, UnillmError) into a one-line error, exit code 2."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from rich.markup import escape

        import unillm

        try:
            return fn(*args, **kwargs)
        except (ValueError, unillm.UnillmError) as exc:
            # escaped: a message such as "pip install 'unillm[bench]'" is not rich markup;
            # soft-wrapped: one line however narrow the terminal
            report.err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper
