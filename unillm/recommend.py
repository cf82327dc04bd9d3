"""`unillm recommend` and ``unillm.load("auto", model, objective=...)``: the fastest engine and
settings, on this machine and model, whose quality stays within a stated bound of float32.

The answer comes from measurements, not from a table: the quality bench (unillm.bench.quality:
perplexity on the shipped text against float32 transformers, and batch-1 speed) over every
installed local engine and its usual quantizations, and, for ``objective="throughput"``, the
throughput bench over the candidates that kept their quality. Both are measured on demand and
cached per machine (CPU, usable CPUs, GPUs), unillm version, model and candidates, in
``<unillm cache>/recommend/``; ``refresh=True`` measures again.

A candidate qualifies when its perplexity is within `max_gap` (relative, either way) of the
reference's, and, if given, its greedy output agrees with the reference's on at least
`min_agreement` of the tokens. Among those, the one with the highest speed wins: median output
tokens/s per request at batch 1 (``latency``), or the best median output tokens/s over the
batch sizes tried (``throughput``, which also says at which batch size).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bench.spec import EngineSpec
from .cache import cache_root
from .errors import InvalidParameterError, UnillmError

OBJECTIVES = ("latency", "throughput")
DEFAULT_MAX_GAP = 0.01

CANDIDATES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "transformers": [("transformers-bf16", {"dtype": "bfloat16"})],
    "bnb": [("bnb-nf4", {"quantization": "nf4"}), ("bnb-int8", {"quantization": "int8"})],
    "torchao": [("torchao-int8", {})],
    "ctranslate2": [("ctranslate2-float32", {"compute_type": "float32"}),
                    ("ctranslate2-int8", {"compute_type": "int8"})],
    "llamacpp": [("llamacpp-f32", {"quantization": "f32", "kv_cache_type": "f32"}),
                 ("llamacpp-q8_0", {"quantization": "q8_0"}),
                 ("llamacpp-q4_k_m", {"quantization": "q4_k_m"})],
    "vllm": [("vllm-float32", {"dtype": "float32"})],
}
"""The settings tried per installed engine (beside the float32 transformers reference). GPTQ
is left out by default (it calibrates on every load); name it in `engines` to include it."""


@dataclass(frozen=True)
class Recommendation:
    """The chosen engine and options, why, and every candidate's figures."""

    engine: str
    options: Mapping[str, Any]
    label: str
    objective: str
    speed: float
    perplexity_gap: float
    max_gap: float
    batch_size: int | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    results: list[str] = field(default_factory=list)

    def load_line(self, model: str) -> str:
        """The ``unillm.load(...)`` call that loads the recommendation."""
        args = [repr(self.engine), repr(model)]
        args += [f"{k}={v!r}" for k, v in self.options.items()]
        return f"unillm.load({', '.join(args)})"


def candidates(engines: str | Sequence[EngineSpec] | None = None) -> list[EngineSpec]:
    """The specs to measure: the given ones, or every installed local engine's usual settings."""
    if isinstance(engines, str):
        return EngineSpec.parse_list(engines)
    if engines is not None:
        return list(engines)
    import unillm

    installed = {i.name for i in unillm.engines() if i.status == "installed"
                 and i.engine_class is not None and i.engine_class.local}
    return [EngineSpec(name, options, label=label)
            for name, choices in CANDIDATES.items() if name in installed
            for label, options in choices]


def _model_identity(model: str) -> str:
    from .testing.models import resolve_model

    path = Path(resolve_model(model))
    if path.is_dir() and (path / "config.json").is_file():
        return f"{path.resolve()}:{hashlib.sha256((path / 'config.json').read_bytes()).hexdigest()[:16]}"
    if path.is_file():
        stat = path.stat()
        return f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
    return model


def cache_key(model: str, specs: Sequence[EngineSpec], settings: Mapping[str, Any]) -> str:
    """What a cached measurement is valid for: machine, unillm, model, candidates, settings."""
    from . import __version__
    from .bench.machine import machine_info

    m = machine_info()
    ident = {"cpu": m.get("cpu"), "usable_cpus": m.get("usable_cpus"), "gpus": m.get("gpus"),
             "unillm": __version__, "model": _model_identity(model),
             "specs": [s.to_dict() for s in specs], "settings": dict(settings)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _cached(path: Path, refresh: bool, measure) -> dict[str, Any]:
    from .bench.results import load_result, write_json

    if path.is_file() and not refresh:
        return load_result(path)
    result = measure()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(result, path)
    return result


def recommend(model: str, *, objective: str = "latency", max_gap: float = DEFAULT_MAX_GAP,
              min_agreement: float | None = None,
              engines: str | Sequence[EngineSpec] | None = None, refresh: bool = False,
              prompts: int = 4, max_tokens: int = 32, batch_sizes: Sequence[int] = (1, 8, 32),
              reporter: Any = None) -> Recommendation:
    """Measure (or read from the cache) and choose; see the module docstring."""
    from .bench.quality import REFERENCE, run_quality
    from .bench.quality_outputs import speed

    if objective not in OBJECTIVES:
        raise InvalidParameterError("objective", objective, " or ".join(OBJECTIVES),
                                    owner="recommend")
    if not 0 <= max_gap:
        raise InvalidParameterError("max_gap", max_gap, "a number >= 0 (0.01 = 1 %)",
                                    owner="recommend")
    specs = candidates(engines)
    settings = {"prompts": prompts, "max_tokens": max_tokens, "reference": REFERENCE.to_dict()}
    folder = cache_root() / "recommend"
    quality_file = folder / f"quality-{cache_key(model, specs, settings)}.json"
    quality = _cached(quality_file, refresh, lambda: run_quality(
        specs, model, prompts=prompts, max_tokens=max_tokens, reporter=reporter))
    rows = []
    for run in quality["runs"]:
        point = run["points"][0] if run["points"] else {}
        q = point.get("quality") or {}
        gap, agreement = q.get("perplexity_gap"), q.get("agreement")
        ok = (run["status"] == "ok" and gap is not None and abs(gap) <= max_gap
              and (min_agreement is None or (agreement or 0.0) >= min_agreement))
        rows.append({"label": run["label"], "engine": run["engine"], "options": run["options"],
                     "status": run["status"], "perplexity_gap": gap, "agreement": agreement,
                     "tokens_per_s": speed(point) if point else None, "qualifies": ok,
                     "error": run.get("error")})
    qualified = [r for r in rows if r["qualifies"] and r["tokens_per_s"] is not None]
    if not qualified:
        raise UnillmError(f"no candidate kept its perplexity within {max_gap:.1%} of the "
                          f"reference on {model} (see {quality_file})")
    files = [str(quality_file)]
    batch_size = None
    if objective == "latency":
        best = max(qualified, key=lambda r: r["tokens_per_s"])
        figure = best["tokens_per_s"]
    else:
        best, figure, batch_size, path = _throughput(model, qualified, rows, batch_sizes,
                                                     folder, refresh, reporter)
        files.append(path)
    return Recommendation(best["engine"], dict(best["options"]), best["label"], objective,
                          figure, best["perplexity_gap"], max_gap, batch_size, rows, files)


def _throughput(model, qualified, rows, batch_sizes, folder, refresh, reporter):
    """The throughput bench over the qualified candidates: the best (row, tokens/s, batch)."""
    from .bench.prompts import LengthDist
    from .bench.throughput import run_throughput

    specs = [EngineSpec(r["engine"], r["options"], label=r["label"]) for r in qualified]
    settings = {"batch_sizes": list(batch_sizes), "num_prompts": 32, "in": 64, "out": 32}
    path = folder / f"throughput-{cache_key(model, specs, settings)}.json"
    result = _cached(path, refresh, lambda: run_throughput(
        specs, model, num_prompts=32, input_len=LengthDist(64), output_len=LengthDist(32),
        batch_sizes=list(batch_sizes), repeats=1, reporter=reporter))
    best = None
    by_label = {r["label"]: r for r in rows}
    for run in result["runs"]:
        if run["status"] != "ok":
            continue
        for point in run["points"]:
            value = (point.get("run") or {}).get("output_throughput")
            value = value.get("median") if isinstance(value, Mapping) else value
            if value is not None and (best is None or value > best[1]):
                best = (run["label"], value, point["batch_size"])
    if best is None:
        raise UnillmError(f"no qualified candidate completed the throughput bench (see {path})")
    by_label[best[0]]["output_throughput"] = best[1]
    return by_label[best[0]], best[1], best[2], str(path)


def load_auto(model: str | os.PathLike[str] | None, *, objective: str = "latency",
              max_gap: float = DEFAULT_MAX_GAP, min_agreement: float | None = None,
              engines: str | Sequence[EngineSpec] | None = None, refresh: bool = False,
              **options: Any):
    """``unillm.load("auto", model, objective=...)``: the recommended engine, loaded (with
    `options` added to the recommended ones)."""
    import unillm

    if model is None:
        raise InvalidParameterError("model", None, "a local model: 'auto' measures engines on it",
                                    owner="unillm.load")
    choice = recommend(os.fspath(model), objective=objective, max_gap=max_gap,
                       min_agreement=min_agreement, engines=engines, refresh=refresh)
    from .testing.models import resolve_model

    return unillm.load(choice.engine, resolve_model(os.fspath(model)),
                       **{**choice.options, **options})
