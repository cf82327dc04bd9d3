"""Errors and warnings on stderr, printed literally.

rich reads ``[...]`` as markup: an install hint such as ``pip install 'unillm[serve]'`` printed
through ``console.print(f"... {exc}")`` loses its brackets and becomes a command that installs
the wrong thing. Every message the CLI builds from an exception or a user's value goes through
here: the label is styled, the message is plain `Text`, so what the user copies is what works.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.text import Text

err = Console(stderr=True, highlight=False)


def print_error(message: object) -> None:
    err.print(Text.assemble(("error: ", "bold red"), str(message)), soft_wrap=True)


def print_warning(message: object) -> None:
    err.print(Text.assemble(("warning: ", "bold yellow"), str(message)), soft_wrap=True)


def fail(message: object, code: int = 2) -> typer.Exit:
    """Print `message` as an error; returns the `typer.Exit` to raise (``raise fail(...)``)."""
    print_error(message)
    return typer.Exit(code)
