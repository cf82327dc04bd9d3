"""`bench compare`: ratios between two results (b / a, run by run), or between the runs of one
result and a baseline run.

Runs are matched by label (when each side has exactly one run, those two are compared whatever
their labels), points by batch size or concurrency. Each metric says which direction is better,
so a reader never has to remember whether a ratio above 1 is good.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .results import point_x

# (name, where to read it, better) per kind; "run" figures are medians over repeats.
_METRICS: dict[str, list[tuple[str, str, str]]] = {
    "latency": [
        ("tokens_per_s", "metrics", "higher"), ("ttft", "metrics", "lower"),
        ("tpot", "metrics", "lower"), ("itl", "metrics", "lower"), ("e2e", "metrics", "lower"),
    ],
    "throughput": [
        ("output_throughput", "run", "higher"), ("total_throughput", "run", "higher"),
        ("request_throughput", "run", "higher"), ("e2e", "metrics", "lower"),
    ],
    "serve": [
        ("output_throughput", "run", "higher"), ("request_throughput", "run", "higher"),
        ("goodput", "point", "higher"), ("ttft", "metrics", "lower"),
        ("tpot", "metrics", "lower"), ("itl", "metrics", "lower"), ("e2e", "metrics", "lower"),
    ],
}
SAME_WITHIN = 0.02
"""Ratios within ±2 % are reported as "same": below what a single run can resolve."""


def _value(point: Mapping[str, Any], name: str, where: str) -> float | None:
    if where == "point":
        return point.get(name)
    source = point.get(where) or {}
    value = source.get(name)
    if isinstance(value, Mapping):
        return value.get("median")
    return value


def _compare_runs(a: Mapping[str, Any], b: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    rows = []
    b_points = {point_x(p): p for p in b["points"]}
    for pa in a["points"]:
        key = point_x(pa)
        pb = b_points.get(key)
        if pb is None:
            continue
        for name, where, better in _METRICS[kind]:
            va, vb = _value(pa, name, where), _value(pb, name, where)
            if va is None or vb is None:
                continue
            ratio = vb / va if va else None
            if ratio is None:
                verdict = "-"
            elif abs(ratio - 1) <= SAME_WITHIN:
                verdict = "same"
            else:
                b_wins = ratio > 1 if better == "higher" else ratio < 1
                verdict = "b better" if b_wins else "a better"
            rows.append({
                "a": a["label"], "b": b["label"], key[0]: key[1], "metric": name,
                "unit": "s" if where == "metrics" and name != "tokens_per_s" else "/s",
                "better": better, "a_value": va, "b_value": vb, "ratio": ratio, "verdict": verdict,
            })
        peak_a = (a.get("peak_memory") or {}).get("rss_bytes")
        peak_b = (b.get("peak_memory") or {}).get("rss_bytes")
        if peak_a and peak_b:
            ratio = peak_b / peak_a
            rows.append({
                "a": a["label"], "b": b["label"], key[0]: key[1], "metric": "peak_rss",
                "unit": "bytes", "better": "lower", "a_value": peak_a, "b_value": peak_b,
                "ratio": ratio, "verdict": "same" if abs(ratio - 1) <= SAME_WITHIN else (
                    "b better" if ratio < 1 else "a better"),
            })
    return rows


def compare_results(a: Mapping[str, Any], b: Mapping[str, Any] | None = None,
                    baseline: str | None = None) -> list[dict[str, Any]]:
    """Rows of (a, b, point, metric, values, ratio b/a, verdict).

    Two results: b's runs against a's, by label. One result (`b` None): every run against the
    run labelled `baseline` (the first run when None).
    """
    kind = a["kind"]
    if kind not in _METRICS:
        raise ValueError(f"compare handles latency, throughput and serve results, not {kind!r}")
    if b is None:
        runs = [r for r in a["runs"] if r["points"]]
        if not runs:
            return []
        base = next((r for r in runs if r["label"] == baseline), None) if baseline else runs[0]
        if base is None:
            raise ValueError(f"no run labelled {baseline!r}; labels: "
                             f"{', '.join(r['label'] for r in runs)}")
        return [row for r in runs if r is not base for row in _compare_runs(base, r, kind)]
    if b["kind"] != kind:
        raise ValueError(f"cannot compare a {kind} result with a {b['kind']} result")
    pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
    if len(a["runs"]) == 1 and len(b["runs"]) == 1:
        pairs = [(a["runs"][0], b["runs"][0])]
    else:
        by_label = {r["label"]: r for r in b["runs"]}
        pairs = [(r, by_label[r["label"]]) for r in a["runs"] if r["label"] in by_label]
        if not pairs:
            raise ValueError("the two results share no run label: nothing to compare")
    return [row for ra, rb in pairs for row in _compare_runs(ra, rb, kind)]
