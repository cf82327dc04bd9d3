"""Terminal output shared by `unillm bench` and `unillm tune`: progress bars while workers run,
and the result tables afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

err = Console(stderr=True)
out = Console()


class RichReporter:
    """The bench `Reporter` protocol on rich progress bars (on stderr, so stdout stays clean)."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def task(self, label: str, total: int) -> Callable[[int], None]:
        task_id = self.progress.add_task(label, total=total)
        return lambda n=1: self.progress.advance(task_id, n)

    def message(self, text: str) -> None:
        # literally: a message may quote an error or a command with brackets in it
        self.progress.console.print(text, style="dim", markup=False, highlight=False)


@contextmanager
def reporter() -> Iterator[RichReporter]:
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err, transient=False,
    )
    with progress:
        yield RichReporter(progress)


def ms(seconds: float | None, digits: int = 1) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.{digits}f}"


def num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def stat(summary: Mapping[str, Any] | None, key: str) -> float | None:
    return summary.get(key) if summary else None


def mib(n: int | None) -> str:
    return "-" if not n else f"{n / 2**20:,.0f}"


def token_check(run: Mapping[str, Any], point: Mapping[str, Any]) -> str:
    """✓ when every request produced its requested token count, else how many did not."""
    if run["status"] == "error" and not point:
        return "[red]error[/]"
    bad = len(point.get("mismatches") or ())
    expected = point.get("expected_output_tokens")
    if expected is None:
        return "not checked"
    if bad:
        return f"[red]✗ {bad} of {point.get('requests')} ≠ {expected}[/]"
    return f"[green]✓ {point.get('requests')}×{expected}[/]"


def files_written(files: Mapping[str, Any]) -> None:
    err.print("[bold]written:[/] " + "  ".join(str(p) for p in files.values()), highlight=False)


def failures(result: Mapping[str, Any]) -> None:
    for run in result["runs"]:
        if run.get("error"):
            err.print(f"{run['label']}: {run['error']}", style="red", highlight=False, markup=False)


def new_table(title: str, columns: list[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c, overflow="fold", justify="left" if c in ("engine", "status", "tokens", "server") else "right")
    return table
