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


SAME_PERPLEXITY = 1e-4
"""Perplexities this close (relative) count as equal for the front: float32 engines differ from
each other by float rounding only (~1e-7), which must not make the slower one "better"."""


def pareto(items: Sequence[tuple[str, float, float]],
           tolerance: float = SAME_PERPLEXITY) -> list[tuple[str, float, float]]:
    """The contestants no other beats on both axes (at least as fast and at most as perplexed,
    one of them strictly; perplexities within `tolerance` of each other are equal), by
    increasing speed."""
    def no_worse(q: float, p: float) -> bool:
        return q <= p * (1 + tolerance)

    def better(q: float, p: float) -> bool:
        return q < p * (1 - tolerance)

    front = [p for p in items if not any(
        q[1] >= p[1] and no_worse(q[2], p[2]) and (q[1] > p[1] or better(q[2], p[2]))
        for q in items)]
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
    fig = figure(11.0, 5.4)
    ax = fig.subplots()
    for i, (label, tps, ppl) in enumerate(items):
        on = any(label == f[0] for f in front)
        ax.scatter([tps], [ppl], s=90 if on else 55, color=colours[label], zorder=3,
                   marker="os^D"[i // 10 % 4],  # tab10 repeats its colours after ten
                   edgecolors="black" if on else "none", linewidths=1.2,
                   label=label + (" (reference)" if label == p["reference"] else ""))
        if on:  # the front's points are named on the plot; every point is in the legend
            right = tps > 0.8 * max(t for _, t, _ in items)  # keep the name inside the axes
            ax.annotate(label, (tps, ppl), textcoords="offset points", fontsize=8,
                        xytext=(-8, -12) if right else (6, 5), ha="right" if right else "left")
    if len(front) > 1:
        ax.plot([f[1] for f in front], [f[2] for f in front], "--", color="tab:gray", zorder=2,
                label="Pareto front: no other point is both faster and lower")
    else:
        ax.plot([], [], "o", mfc="none", mec="black", label="Pareto front (one point)")
    ax.set_xlabel(f"speed: output tokens/s per request (median, batch 1, {p['max_tokens']} "
                  "tokens)")
    ax.set_ylabel(f"perplexity on the shipped text ({p['text_chars']} characters), lower is "
                  "better")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title(f"Speed against quality: each engine / quantization a point; reference "
                 f"{p['reference']}\n{subtitle(result)}", fontsize=10)
    return {"plot_quality": save(fig, out / f"{stem}-quality.png")}

