"""Progress and result tables for the bench and tune commands.

Progress: rich bars on a terminal, plain flushed lines in a pipe or log file (`reporter`).
Tables: one row per engine when it fits the console, else engines as columns, else one small
table per engine (`table_layout`), so a result reads at 80 columns.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from . import report


# -- progress --------------------------------------------------------------------------------
class PlainReporter:
    """Progress as plain lines on stderr, flushed one by one, for pipes and log files (where
    rich's bars would show nothing until the end): each note, a line per engine and pass, and
    a line when any other task (a serve level, tune's trials) completes."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.tasks: dict[str, list[int]] = {}
        self.by_round: set[str] = set()

    def line(self, text: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(f"[{time.monotonic() - self.started:6.0f}s] {text}\n")
        stream.flush()

    def task(self, label: str, total: int) -> Callable[[int], None]:
        state = self.tasks[label] = [0, total]

        def advance(n: int = 1) -> None:
            before = state[0]
            state[0] += n
            if label not in self.by_round and before < state[1] <= state[0]:
                self.line(f"{label}: done ({state[0]}/{state[1]})")

        return advance

    def message(self, text: str) -> None:
        self.line(text)

    def round_done(self, label: str, done: int, rounds: int) -> None:
        self.by_round.add(label)
        units, total = self.tasks.get(label, [0, 0])
        self.line(f"{label}: pass {done}/{rounds} done ({units}/{total} requests)")


def interactive() -> bool:
    return report.out.is_terminal and report.err.is_terminal


@contextmanager
def reporter() -> Iterator[Any]:
    """rich progress bars on a terminal; plain lines when stdout or stderr is not one."""
    if interactive():
        with report.reporter() as rep:
            yield rep
    else:
        yield PlainReporter()


# -- tables ----------------------------------------------------------------------------------
Rows = Sequence[Sequence[str]]


def _wide(title: str, columns: Sequence[str], rows: Rows, keys: int):
    table = report.new_table(title, list(columns))
    for row in rows:
        table.add_row(*row)
    return table


def _transposed(columns: Sequence[str], rows: Rows, keys: int):
    """Engines as columns, figures as rows."""
    from rich.table import Table

    table = Table()
    table.add_column("", justify="left")
    for row in rows:
        head = [row[0]] + [f"{c} {v}" for c, v in zip(columns[1:keys], row[1:keys])]
        table.add_column("\n".join(head), justify="right", overflow="fold")
    for i, name in enumerate(columns[keys:], start=keys):
        table.add_row(name, *(row[i] for row in rows))
    return table


def _vertical(columns: Sequence[str], row: Sequence[str], keys: int):
    """One engine's figures as field/value lines."""
    from rich.table import Table

    table = Table(title=" ".join(row[:keys]), title_justify="left", show_header=False)
    table.add_column("field", justify="left")
    table.add_column("value", justify="right", overflow="fold")
    for name, value in zip(columns[keys:], row[keys:]):
        table.add_row(name, value)
    return table


def table_layout(title: str, columns: Sequence[str], rows: Rows, width: int, console: Any,
                 keys: int = 1) -> list[Any]:
    """What to print so that a result table reads at `width` columns: one row per engine (and
    point) when that fits; else engines as columns, as many side by side as fit; else one
    small table per engine. `keys`: the leading columns that name a row (engine, and batch
    size or concurrency)."""
    from rich.text import Text

    natural = console.options.update_width(100_000)

    def fits(table: Any) -> bool:
        return console.measure(table, options=natural).maximum <= width

    wide = _wide(title, columns, rows, keys)
    if not rows or fits(wide):
        return [wide]
    for n in range(len(rows), 0, -1):
        chunks = [_transposed(columns, rows[k:k + n], keys) for k in range(0, len(rows), n)]
        if all(fits(c) for c in chunks):
            return [Text(title), *chunks]
    return [Text(title), *(_vertical(columns, row, keys) for row in rows)]


def show_table(title: str, columns: Sequence[str], rows: Rows, *, keys: int = 1,
               console: Any = None) -> None:
    """Print a result table readable at the console's width (see `table_layout`)."""
    console = console or report.out
    for part in table_layout(title, columns, rows, console.width, console, keys):
        console.print(part)
