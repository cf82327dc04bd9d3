"""The files a result is written as: ``NAME.json``, ``NAME.csv``, ``NAME-requests.csv`` and
``NAME-*.png``.

Which CSV rows and which plots each kind gets is this module's table, so the schema
(`results`) and the plots (`plots`, `tune_outputs`) need no case for any kind: the layers are
results (schema) <- plots, tune_outputs <- outputs.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import plots as _plots
from . import quality_outputs, tune_outputs
from .results import request_rows, summary_rows, write_csv, write_json

Rows = Callable[[Mapping[str, Any]], list[dict[str, Any]]]
Plot = Callable[[Mapping[str, Any], Path, str], dict[str, Path]]

WRITERS: dict[str, tuple[Rows, Rows | None, Plot]] = {
    "latency": (summary_rows, request_rows, _plots.plot_latency),
    "throughput": (summary_rows, request_rows, _plots.plot_throughput),
    "serve": (summary_rows, request_rows, _plots.plot_serve),
    "tune": (tune_outputs.tune_rows, None, tune_outputs.plot_tune),
    "quality": (quality_outputs.quality_rows, request_rows, quality_outputs.plot_quality),
}
"""kind -> (summary CSV rows, per-request CSV rows or None, plots)."""


def default_name(kind: str) -> str:
    """File stem for a result written without --name: the kind and a timestamp."""
    return f"{kind}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def plot_result(result: Mapping[str, Any], out: Path, stem: str) -> dict[str, Path]:
    """Every plot for this result's kind; returns role -> path."""
    writers = WRITERS.get(result["kind"])
    return writers[2](result, out, stem) if writers else {}


def write_outputs(result: Mapping[str, Any], out_dir: str | os.PathLike[str] = ".",
                  name: str | None = None, plots: bool = True) -> dict[str, Path]:
    """Write the JSON, the summary CSV, the per-request CSV and the PNG plots of a result
    into `out_dir` (created if needed), as ``NAME.json``, ``NAME.csv``, ``NAME-requests.csv``,
    ``NAME-*.png``. Returns each file's path by role."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = name or default_name(result["kind"])
    files = {"json": write_json(result, out / f"{stem}.json")}
    writers = WRITERS.get(result["kind"])
    if writers is None:
        return files
    rows, per_request, _ = writers
    files["csv"] = write_csv(rows(result), out / f"{stem}.csv")
    requests = per_request(result) if per_request else []
    if requests:
        files["requests_csv"] = write_csv(requests, out / f"{stem}-requests.csv")
    if plots:
        files.update(plot_result(result, out, stem))
    return files
