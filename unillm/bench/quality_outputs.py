"""The files of a `quality` result: its CSV rows (speed and quality per contestant) and its
plot of speed against quality, each contestant a point, the Pareto front marked.

On `plots`' house style, like every plot of the bench; the schema (`results`) knows nothing
of quality beyond the point's ``quality`` record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .plots import figure, run_colours, save, subtitle
from .results import summary_rows

QUALITY_COLUMNS = ("perplexity", "perplexity_gap", "mean_abs_logprob_diff", "agreement",
                   "exact", "scoring_tokens_per_s")


def speed(point: Mapping[str, Any]) -> float | None:
    """A contestant's speed: median output tokens/s per request at batch 1."""
    summary = (point.get("metrics") or {}).get("tokens_per_s")
    return summary["median"] if summary else None


def quality_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The latency summary row of each run, with its quality figures and task metrics."""
    rows = summary_rows(result)
    by_label = {run["label"]: run for run in result["runs"]}
    for row in rows:
        run = by_label[row["label"]]
        point = run["points"][0] if run["points"] else {}
        q = point.get("quality") or {}
        row["reference"] = bool(run.get("reference"))
        for name in QUALITY_COLUMNS:
            row[name] = q.get(name)
        for task, figures in (q.get("tasks") or {}).items():
            for metric, value in figures.items():
                row[f"{task}:{metric}"] = value
        row["pareto"] = row["label"] in pareto_labels(result)
    return rows


def points(result: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """(label, tokens/s, perplexity) of every run that measured both."""
    out = []
    for run in result["runs"]:
        if run["status"] == "error" or not run["points"]:
            continue
        point = run["points"][0]
        tps, ppl = speed(point), (point.get("quality") or {}).get("perplexity")
        if tps is not None and ppl is not None:
            out.append((run["label"], tps, ppl))
    return out


def pareto(items: Sequence[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """The contestants no other beats on both axes (faster and lower perplexity, one of them
    strictly), by increasing speed."""
    front = [p for p in items if not any(
        q[1] >= p[1] and q[2] <= p[2] and (q[1] > p[1] or q[2] < p[2]) for q in items)]
    return sorted(front, key=lambda p: p[1])


def pareto_labels(result: Mapping[str, Any]) -> set[str]:
    return {label for label, _, _ in pareto(points(result))}


def plot_quality(result: Mapping[str, Any], out: Path, stem: str) -> dict[str, Path]:
    items = points(result)
    if not items:
        return {}
    p = result["parameters"]
    colours = run_colours([label for label, _, _ in items])
    front = pareto(items)
    fig = figure(8.5, 5.2)
    ax = fig.subplots()
    for label, tps, ppl in items:
        on = any(label == f[0] for f in front)
        ax.scatter([tps], [ppl], s=90 if on else 55, color=colours[label], zorder=3,
                   edgecolors="black" if on else "none", linewidths=1.2)
        ax.annotate(label, (tps, ppl), textcoords="offset points", xytext=(6, 5), fontsize=8)
    if len(front) > 1:
        ax.plot([f[1] for f in front], [f[2] for f in front], "--", color="tab:gray", zorder=2,
                label="Pareto front (no other point is faster and better)")
    elif front:
        ax.plot([], [], "o", mfc="none", mec="black", label="Pareto front (one point)")
    ax.set_xlabel(f"speed: output tokens/s per request (median, batch 1, {p['max_tokens']} "
                  "tokens)")
    ax.set_ylabel(f"perplexity on the shipped text ({p['text_chars']} characters), lower is "
                  "better")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"Speed against quality: each engine / quantization a point; reference "
                 f"{p['reference']}\n{subtitle(result)}", fontsize=10)
    return {"plot_quality": save(fig, out / f"{stem}-quality.png")}
