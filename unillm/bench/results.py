"""The result file every bench writes (schema ``unillm.bench/1``, documented in docs/bench.md),
and its CSV forms: the schema only, the same for every kind. Which files and plots a kind gets
is `outputs`' business.

One shape for every kind of bench, so that writers, plots and `compare` need no per-kind
cases beyond the name of a point's x value:

    result = {schema, kind, created, command, parameters, machine, versions, ok, runs: [run]}
    run    = {label, engine, options, model, status, error, load_s, engine_info, peak_memory,
              points: [point]}
    point  = {batch_size | concurrency (+ rate), requests, expected_output_tokens, mismatches,
              metrics: {ttft, tpot, e2e, itl, tokens_per_s, prompt_tokens, output_tokens},
              run: {wall, output_throughput, request_throughput, total_throughput, ...},
              records: [per-request figures],
              quality: {perplexity, perplexity_gap, agreement, ...}  (kind quality only)}

Times are seconds, memory bytes, throughputs per second; metric summaries are the core's
`Summary` (count, mean, std, min, max, median, p90, p95, p99).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..timing import Stats, Timing

SCHEMA = "unillm.bench/1"
KINDS = ("latency", "throughput", "serve", "tune", "quality")
X_KEYS = ("batch_size", "offered_rate", "concurrency")
"""The key that names a point within a run, per kind: batch size (latency, throughput), or the
offered request rate (a serve sweep over rates) or client concurrency (serve)."""

METRICS = ("tokens_per_s", "ttft", "tpot", "e2e", "itl")
RUN_FIGURES = ("output_throughput", "total_throughput", "request_throughput")


def new_result(kind: str, parameters: Mapping[str, Any], command: str | None = None) -> dict[str, Any]:
    """An empty result of `kind`, stamped with the machine and every engine's versions."""
    from .machine import machine_info, versions

    if kind not in KINDS:
        raise ValueError(f"kind = {kind!r} is not allowed: one of {', '.join(KINDS)}")
    return {
        "schema": SCHEMA,
        "kind": kind,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command if command is not None else _command_line(),
        "parameters": dict(parameters),
        "machine": machine_info(),
        "versions": versions(),
        "ok": True,
        "runs": [],
    }


def _command_line() -> str:
    import shlex

    argv = list(sys.argv)
    if argv and argv[0].endswith(("unillm", "__main__.py")):
        argv[0] = "unillm"
    return " ".join(shlex.quote(a) for a in argv)


# -- per-request figures -----------------------------------------------------------------
def timing_to_wire(timing: Timing) -> dict[str, Any]:
    """A `Timing` as plain data, token times included (worker -> parent)."""
    return {
        "e2e": timing.e2e,
        "token_times": list(timing.token_times) if timing.token_times is not None else None,
        "prompt_tokens": timing.prompt_tokens,
        "output_tokens": timing.output_tokens,
        "source": timing.source,
        "ttft_override": timing.ttft_override,
    }


def timing_from_wire(data: Mapping[str, Any]) -> Timing:
    times = data.get("token_times")
    return Timing(
        e2e=data["e2e"], token_times=tuple(times) if times is not None else None,
        prompt_tokens=data.get("prompt_tokens"), output_tokens=data["output_tokens"],
        source=data["source"], ttft_override=data.get("ttft_override"),
    )


def record(timing: Timing, **extra: Any) -> dict[str, Any]:
    """One request's figures as stored in a result (token times left out: their summary is
    in the point's `itl`)."""
    return {
        **extra,
        "prompt_tokens": timing.prompt_tokens,
        "output_tokens": timing.output_tokens,
        "ttft": timing.ttft,
        "tpot": timing.tpot,
        "e2e": timing.e2e,
        "tokens_per_s": timing.tokens_per_s,
    }


def summarize(timings: Iterable[Timing]) -> dict[str, Any]:
    """The core's `Stats` summary of these requests, as plain dicts (None where unobserved)."""
    stats = Stats()
    for t in timings:
        stats.add(t)
    return {k: (v.to_dict() if v is not None else None) for k, v in stats.summary().items()}


def run_entry(outcome: Any, model: str) -> dict[str, Any]:
    """The run skeleton for one contestant's `Outcome` (points are added by the bench)."""
    spec = outcome.spec
    load = outcome.load or {}
    return {
        "label": spec.label,
        "engine": spec.engine,
        "options": dict(spec.options),
        "model": spec.model or model,
        "model_path": load.get("model_path"),
        "status": "error" if outcome.error else "ok",
        "error": outcome.error,
        "load_s": load.get("load_s"),
        "engine_info": load.get("engine_info"),
        "engine_packages": load.get("engine_packages"),
        "python": load.get("python"),
        "peak_memory": outcome.peak_memory,
        "points": [],
    }


def set_statuses(result: dict[str, Any]) -> dict[str, Any]:
    """Set each run's status (``mismatch`` when any request did not produce the requested
    number of tokens) and the result's `ok`."""
    for run in result["runs"]:
        if run["status"] == "ok" and any(p.get("mismatches") for p in run["points"]):
            run["status"] = "mismatch"
    result["ok"] = bool(result["runs"]) and all(r["status"] == "ok" for r in result["runs"])
    return result


# -- files -------------------------------------------------------------------------------
def _finite(value: Any) -> Any:
    """JSON has no inf/nan: a figure that is not finite (a zero wall time) is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(result: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    text = json.dumps(_finite(result), indent=1, allow_nan=False, default=str)
    path.write_text(text + "\n", "utf-8")
    return path


def load_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a result file, refusing files of another schema."""
    data = json.loads(Path(path).read_text("utf-8"))
    schema = data.get("schema") if isinstance(data, dict) else None
    if not isinstance(schema, str) or not schema.startswith("unillm.bench/"):
        raise ValueError(f"{path}: not a unillm bench result (schema = {schema!r})")
    return data


def point_x(point: Mapping[str, Any]) -> tuple[str, Any]:
    for key in X_KEYS:
        if key in point:
            return key, point[key]
    return "point", None


def summary_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per run and point: run figures, and median/p90/p99 of each metric."""
    rows = []
    for run in result["runs"]:
        peak = (run.get("peak_memory") or {}).get("rss_bytes")
        points = run["points"] or [{}]
        for point in points:
            row: dict[str, Any] = {
                "label": run["label"], "engine": run["engine"], "status": run["status"],
                "options": json.dumps(run["options"], sort_keys=True),
            }
            key, x = point_x(point)
            if key != "point":
                row[key] = x
            if "rate" in point:
                row["rate"] = point["rate"]
            row["requests"] = point.get("requests")
            row["mismatches"] = len(point.get("mismatches") or ())
            row["expected_output_tokens"] = point.get("expected_output_tokens")
            figures = point.get("run") or {}
            for name in RUN_FIGURES:
                value = figures.get(name)
                row[name] = value["median"] if isinstance(value, Mapping) else value
            if "goodput" in point:
                row["goodput"] = point["goodput"]
            for name in METRICS:
                summary = (point.get("metrics") or {}).get(name)
                unit = "" if name == "tokens_per_s" else "_s"
                for stat in ("mean", "median", "p90", "p99"):
                    row[f"{name}_{stat}{unit}"] = summary[stat] if summary else None
            row["peak_rss_bytes"] = peak
            row["error"] = (run.get("error") or "").splitlines()[0] if run.get("error") else ""
            rows.append(row)
    return rows


def request_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per measured request, with its run label and point."""
    rows = []
    for run in result["runs"]:
        for point in run["points"]:
            key, x = point_x(point)
            for rec in point.get("records") or ():
                row = {"label": run["label"], "engine": run["engine"]}
                if key != "point":
                    row[key] = x
                row.update(rec)
                rows.append(row)
    return rows


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    columns: list[str] = []
    for row in rows:
        for k in row:
            if k not in columns:
                columns.append(k)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return path
