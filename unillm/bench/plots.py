"""PNG plots of a bench result, with matplotlib's object API (no pyplot: no global backend
state is touched, so plotting works inside notebooks and servers alike).

Every axis is labelled with its unit; every contestant keeps one colour across a result's
plots; a run whose requests did not all produce the requested token count is marked
"(token mismatch)" in the legend, and failed runs are left out (their error is in the JSON).

`figure`, `run_colours`, `subtitle`, `save` and `DPI` are the house style, public for the other
plots of the bench (`tune_outputs`); which plots a result gets is chosen in `outputs`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..timing import percentile

DPI = 130


def figure(width: float, height: float):
    """A matplotlib `Figure` (object API, constrained layout) of this size in inches."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def run_colours(labels: Sequence[str]) -> dict[str, Any]:
    """One colour per contestant label, the same in every plot of a result."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def _name(run: Mapping[str, Any]) -> str:
    return run["label"] + (" (token mismatch)" if run["status"] == "mismatch" else "")


def _plotted(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in result["runs"] if r["points"] and r["status"] != "error"]


def subtitle(result: Mapping[str, Any]) -> str:
    """Where and when a result was measured: GPUs or CPU and usable CPUs, unillm, date."""
    m = result.get("machine") or {}
    cpu = m.get("cpu") or m.get("machine") or ""
    gpus = m.get("gpus") or []
    where = ", ".join(gpus) if gpus else f"{cpu}, {m.get('usable_cpus')} CPUs"
    return f"{where} · unillm {result.get('versions', {}).get('unillm', '?')} · {result['created'][:10]}"


def save(fig, path: Path) -> Path:
    """Write `fig` as a PNG at the house `DPI`."""
    fig.savefig(path, dpi=DPI)
    return path


def _values(records: Sequence[Mapping[str, Any]], key: str, scale: float = 1.0) -> list[float]:
    return [r[key] * scale for r in records if r.get(key) is not None]


# -- latency ----------------------------------------------------------------------------
def plot_latency(result: Mapping[str, Any], out: Path, stem: str) -> dict[str, Path]:
    runs = _plotted(result)
    if not runs:
        return {}
    p = result["parameters"]
    colours = run_colours([r["label"] for r in runs])
    files = {}

    fig = figure(max(5.5, 1.3 * len(runs) + 3), 4.2)
    ax = fig.subplots()
    names = [_name(r) for r in runs]
    medians, lows, highs = [], [], []
    for r in runs:
        v = sorted(_values(r["points"][0]["records"], "tokens_per_s"))
        med = percentile(v, 50) if v else 0.0
        medians.append(med)
        lows.append(med - (percentile(v, 10) if v else 0.0))
        highs.append((percentile(v, 90) if v else 0.0) - med)
    xs = range(len(runs))
    ax.bar(xs, medians, yerr=[lows, highs], capsize=5,
           color=[colours[r["label"]] for r in runs])
    shown = [f"{n}\n{m:,.0f} tok/s" if m >= 100 else f"{n}\n{m:.1f} tok/s"
             for n, m in zip(names, medians)]
    tilt = len(runs) > 3 or max(len(n) for n in names) > 14
    ax.set_xticks(list(xs), shown, rotation=15 if tilt else 0, ha="right" if tilt else "center")
    ax.set_ylabel("output tokens/s per request")
    ax.set_xlabel("engine (median per request)")
    ax.set_ylim(0, max(m + h for m, h in zip(medians, highs)) * 1.1 or 1.0)
    ax.set_title(f"Batch-1 generation speed: {p['max_tokens']} output tokens per request, "
                 f"{p['prompts']} prompts × {p['repeats']} repeats\nbars: median, whiskers: "
                 f"p10–p90 · {subtitle(result)}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    files["plot_tokens_per_s"] = save(fig, out / f"{stem}-tokens_per_s.png")

    # Side by side while they fit a page; stacked beyond 3 engines (a row of 3 × 7 boxes is
    # too wide to read in a document).
    if len(runs) <= 3:
        fig = figure(max(9.0, 1.2 * len(runs) * 3), 4.2)
        axes = fig.subplots(1, 3)
    else:
        fig = figure(max(9.0, 1.3 * len(runs)), 10.5)
        axes = fig.subplots(3, 1)
    for ax, (key, title, scale, unit) in zip(axes, [
            ("ttft", "time to first token", 1000.0, "ms"),
            ("tpot", "time per output token (after the first)", 1000.0, "ms"),
            ("e2e", "end-to-end latency", 1.0, "s")]):
        data = [_values(r["points"][0]["records"], key, scale) for r in runs]
        shown = [(d, r) for d, r in zip(data, runs) if d]
        if shown:
            box = ax.boxplot([d for d, _ in shown], patch_artist=True, showfliers=True,
                             medianprops={"color": "black"})
            for patch, (_, r) in zip(box["boxes"], shown):
                patch.set_facecolor(colours[r["label"]])
                patch.set_alpha(0.75)
            ax.set_xticks(range(1, len(shown) + 1), [r["label"] for _, r in shown],
                          rotation=20, ha="right")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(f"{key.upper()} ({unit})")
        ax.set_xlabel("engine")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Batch-1 latency per request ({p['max_tokens']} output tokens, "
                 f"{p['api']} API) · {subtitle(result)}", fontsize=10)
    files["plot_latency"] = save(fig, out / f"{stem}-latency.png")
    return files


# -- curves over batch size or concurrency ------------------------------------------------
def _curve(ax, runs, colours, x_key: str, y, *, label_suffix: str = "", style: str = "-o"):
    for r in runs:
        xs, ys = [], []
        for point in r["points"]:
            value = y(point)
            if value is not None:
                xs.append(point[x_key])
                ys.append(value)
        if xs:
            ax.plot(xs, ys, style, color=colours[r["label"]], label=_name(r) + label_suffix)


def _log2_axis(ax, values: Sequence[int], label: str) -> None:
    ax.set_xscale("log", base=2)
    ticks = sorted(set(values))
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel(label)
    ax.grid(alpha=0.3)


def _median(figures: Mapping[str, Any] | None, name: str) -> float | None:
    value = (figures or {}).get(name)
    if isinstance(value, Mapping):
        return value.get("median")
    return value


def plot_throughput(result: Mapping[str, Any], out: Path, stem: str) -> dict[str, Path]:
    runs = _plotted(result)
    if not runs:
        return {}
    p = result["parameters"]
    colours = run_colours([r["label"] for r in runs])
    fig = figure(10.5, 4.2)
    left, right = fig.subplots(1, 2)
    _curve(left, runs, colours, "batch_size", lambda pt: _median(pt.get("run"), "output_throughput"))
    _curve(left, runs, colours, "batch_size", lambda pt: _median(pt.get("run"), "total_throughput"),
           label_suffix=" (prompt + output)", style="--s")
    left.set_ylabel("tokens/s (median over repeats)")
    left.set_title("token throughput", fontsize=10)
    _curve(right, runs, colours, "batch_size", lambda pt: _median(pt.get("run"), "request_throughput"))
    right.set_ylabel("requests/s (median over repeats)")
    right.set_title("request throughput", fontsize=10)
    for ax in (left, right):
        _log2_axis(ax, p["batch_sizes"], "batch size (prompts per generate call)")
        ax.set_ylim(bottom=0)
    left.legend(fontsize=8)
    fig.suptitle(
        f"Offline throughput: {p['num_prompts']} prompts, input {p['input_len']['mean']} tokens "
        f"(±{p['input_len']['spread']:.0%}), output {p['output_len']['mean']} tokens "
        f"(±{p['output_len']['spread']:.0%}) · {subtitle(result)}", fontsize=10)
    return {"plot_throughput": save(fig, out / f"{stem}-throughput.png")}


def _slo_text(slo: Mapping[str, Any]) -> str:
    parts = [f"{k.upper()} ≤ {v * 1000:g} ms" for k, v in slo.items() if v is not None]
    return ", ".join(parts)


def plot_serve(result: Mapping[str, Any], out: Path, stem: str) -> dict[str, Path]:
    runs = _plotted(result)
    if not runs:
        return {}
    p = result["parameters"]
    if p.get("rates"):
        return plot_serve_load(result, runs, out, stem)
    colours = run_colours([r["label"] for r in runs])
    levels = p["concurrency"]
    rate = p.get("rate")
    arrivals = f"Poisson arrivals at {rate} req/s" if rate else "all requests at once"
    files = {}

    fig = figure(10.5, 4.2)
    left, right = fig.subplots(1, 2)
    _curve(left, runs, colours, "concurrency", lambda pt: (pt.get("run") or {}).get("output_throughput"))
    left.set_ylabel("output tokens/s")
    left.set_title("output token throughput", fontsize=10)
    _curve(right, runs, colours, "concurrency", lambda pt: (pt.get("run") or {}).get("request_throughput"))
    if any(pt.get("goodput") is not None for r in runs for pt in r["points"]):
        _curve(right, runs, colours, "concurrency", lambda pt: pt.get("goodput"),
               label_suffix=" goodput", style="--s")
    right.set_ylabel("requests/s")
    right.set_title("request throughput" + (f" and goodput ({_slo_text(p['slo'])})"
                                            if p.get("slo") else ""), fontsize=10)
    for ax in (left, right):
        _log2_axis(ax, levels, "concurrent requests (client)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    fig.suptitle(f"Serving throughput vs concurrency ({arrivals}) · {subtitle(result)}", fontsize=10)
    files["plot_throughput"] = save(fig, out / f"{stem}-throughput.png")

    fig = figure(10.5, 4.2)
    left, right = fig.subplots(1, 2)
    for ax, key, title in ((left, "ttft", "time to first token"), (right, "itl", "inter-token latency")):
        for stat, style in (("median", "-o"), ("p99", "--^")):
            def y(pt, key=key, stat=stat):
                s = (pt.get("metrics") or {}).get(key)
                return s[stat] * 1000.0 if s else None
            _curve(ax, runs, colours, "concurrency", y, label_suffix=f" {stat}", style=style)
        ax.set_ylabel(f"{key.upper()} (ms)")
        ax.set_title(title, fontsize=10)
        _log2_axis(ax, levels, "concurrent requests (client)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    fig.suptitle(f"Serving latency vs concurrency ({arrivals}) · {subtitle(result)}", fontsize=10)
    files["plot_latency"] = save(fig, out / f"{stem}-latency.png")
    return files


def plot_serve_load(result: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], out: Path,
                    stem: str) -> dict[str, Path]:
    """A sweep over offered load: latency (TTFT, e2e: median and p99) and the rate served,
    against the rate offered, each run's saturation point marked (where it stopped serving
    `KEEP_UP` of the offered rate)."""
    p = result["parameters"]
    colours = run_colours([r["label"] for r in runs])
    burst = p.get("burstiness") or 1.0
    arrivals = "Poisson" if burst == 1.0 else f"gamma, burstiness {burst:g}"
    fig = figure(15.0, 4.4)
    axes = fig.subplots(1, 3)
    for ax, key, title in ((axes[0], "ttft", "time to first token"),
                           (axes[1], "e2e", "end-to-end latency")):
        for stat, style in (("median", "-o"), ("p99", "--^")):
            def y(pt, key=key, stat=stat):
                s = (pt.get("metrics") or {}).get(key)
                return s[stat] * 1000.0 if s else None
            _curve(ax, runs, colours, "offered_rate", y, label_suffix=f" {stat}", style=style)
        ax.set_ylabel(f"{key.upper()} (ms)")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
    served = axes[2]
    _curve(served, runs, colours, "offered_rate",
           lambda pt: (pt.get("run") or {}).get("request_throughput"))
    top = max(p["rates"])
    served.plot([0, top], [0, top], ":", color="grey", label="served = offered")
    served.set_ylabel("requests/s served")
    served.set_title("rate served", fontsize=10)
    served.set_ylim(bottom=0)
    for r in runs:
        sat = (r.get("saturation") or {}).get("saturated_at")
        if sat is None:
            continue
        for ax in axes:
            ax.axvline(sat, color=colours[r["label"]], linestyle="--", alpha=0.6)
        right = sat > 0.7 * top  # near the right edge: write to the left of the line
        served.annotate(f"{_name(r)} saturates\nat {sat:g} req/s", (sat, 0),
                        xytext=(-4 if right else 4, 8), textcoords="offset points",
                        fontsize=8, ha="right" if right else "left",
                        color=colours[r["label"]])
    for ax in axes:
        ax.set_xlabel("offered load (requests/s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Latency against offered load ({arrivals} arrivals, at most "
                 f"{max(p['concurrency'])} in flight) · {subtitle(result)}", fontsize=10)
    return {"plot_load": save(fig, out / f"{stem}-load.png")}
