"""The bench's optional dependencies (the ``bench`` extra), checked before any work starts.

A bench on a real model runs for minutes; finding out at the end, when the plots are drawn,
that matplotlib is missing throws that time away. The commands call `require` first, and a
missing package is one line that names the install command.
"""

from __future__ import annotations

import importlib

from ..errors import MissingDependency

INSTALL = "pip install 'unillm[bench]'"
"""The install command for everything the bench can use (matplotlib and optuna)."""


def require(module: str, needed_for: str, alternative: str | None = None) -> None:
    """Raise `MissingDependency` unless `module` imports: "matplotlib is not installed (needed
    for the PNG plots): pip install 'unillm[bench]', or pass --no-plots"."""
    try:
        importlib.import_module(module)
    except ImportError:
        also = f", or {alternative}" if alternative else ""
        raise MissingDependency(
            f"{module} is not installed (needed for {needed_for}): {INSTALL}{also}"
        ) from None


def require_plots() -> None:
    require("matplotlib", "the PNG plots", "pass --no-plots")


def require_tune() -> None:
    require("optuna", "unillm tune's search")
