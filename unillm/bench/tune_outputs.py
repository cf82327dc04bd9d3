"""The files of a `tune` result: its CSV rows (the defaults, then one row per trial) and its
plots (each trial with the best so far, and the confirmation's defaults vs tuned).

Kept apart from `tune` (the search) so that writing files needs no search machinery, and on
`plots`' public house style, like every other plot of the bench.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .plots import figure, save, subtitle


def tune_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """CSV rows: the defaults, then one row per trial."""
    knobs = list(result["parameters"]["knobs"])
    rows = []
    d = result["default"]
    rows.append({"trial": "default", "state": "complete" if d["value"] is not None else "fail",
                 "value": d["value"], **{k: "(default)" for k in knobs}, "error": d["error"] or ""})
    for t in result["trials"]:
        merged = {**t["options"], **t["call"]}
        rows.append({"trial": t["number"], "state": t["state"], "value": t["value"],
                     **{k: merged.get(k) for k in knobs}, "duration_s": t.get("duration_s"),
                     "error": t["error"] or ""})
    return rows


def plot_tune(result: Mapping[str, Any], out: Path, stem: str) -> dict[str, Path]:
    p = result["parameters"]
    unit = p["unit"]
    scale, shown_unit = (1000.0, "median end-to-end latency (ms)") if p["objective"] == "latency" \
        else (1.0, unit)
    files = {}
    trials = result["trials"]
    fig = figure(8.0, 4.4)
    ax = fig.subplots()
    xs = [t["number"] for t in trials if t["value"] is not None]
    ys = [t["value"] * scale for t in trials if t["value"] is not None]
    ax.plot(xs, ys, "o", color="tab:blue", label="trial (one measured run)")
    fails = [t["number"] for t in trials if t["value"] is None]
    if fails:
        ax.plot(fails, [min(ys or [0])] * len(fails), "x", color="tab:red", label="failed trial")
    best_so_far, current = [], None
    for y in ys:
        if current is None or (y > current if p["direction"] == "maximize" else y < current):
            current = y
        best_so_far.append(current)
    if xs:
        ax.step(xs, best_so_far, where="post", color="tab:green", label="best so far")
    if result["default"]["value"] is not None:
        ax.axhline(result["default"]["value"] * scale, color="tab:gray", ls="--",
                   label="engine defaults")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial number")
    ax.set_ylabel(shown_unit + (" (higher is better)" if p["direction"] == "maximize"
                                else " (lower is better)"))
    ax.set_title(f"unillm tune {p['engine']} ({p['objective']}): {len(trials)} trials, "
                 f"Optuna TPE\n{subtitle(result)}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    files["plot_trials"] = save(fig, out / f"{stem}-trials.png")

    conf = result.get("confirmation") or {}
    if conf.get("default") and conf.get("best"):
        fig = figure(6.5, 4.4)
        ax = fig.subplots()
        groups = [[v * scale for v in conf["default"]], [v * scale for v in conf["best"]]]
        box = ax.boxplot(groups, patch_artist=True, medianprops={"color": "black"})
        for patch, colour in zip(box["boxes"], ("tab:gray", "tab:green")):
            patch.set_facecolor(colour)
            patch.set_alpha(0.6)
        for i, g in enumerate(groups, start=1):
            ax.plot([i] * len(g), g, "o", color="black", ms=4, alpha=0.7)
        ax.set_xticks([1, 2], ["engine defaults", "tuned (best trial)"])
        ax.set_xlabel("configuration (each dot: one measured run)")
        ax.set_ylabel(shown_unit)
        ax.set_ylim(bottom=0)
        imp = conf.get("improvement")
        ci = conf.get("ci90")
        how = ("defaults / tuned latency − 1" if p["direction"] == "minimize"
               else "tuned / defaults throughput − 1")
        label = (f"improvement {imp:+.1%} ({how}; 90% CI {ci[0]:+.1%} … {ci[1]:+.1%})"
                 if imp is not None and ci else "improvement: n/a")
        ax.set_title(f"{p['engine']} {p['objective']}: defaults vs tuned, {conf['repeats']} "
                     f"interleaved repeats each\n{label}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        files["plot_confirm"] = save(fig, out / f"{stem}-confirm.png")
    return files
