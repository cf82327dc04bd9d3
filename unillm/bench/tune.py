"""`unillm tune`: search an engine's declared knobs with Optuna (TPE) for its best settings.

The search space is read from the registry: every engine's `tunables` (`Knob`s) name fields
of its `Options` (load options such as threads, dtype, compute_type, max_num_seqs), so any
plugin that declares knobs can be tuned with no code here. The bench adds its own knob of the
call for the throughput objective: `batch_size`, the number of prompts per `generate` call.

Each trial is a real measured run in a fresh worker process (so a trial's process-wide
settings, e.g. torch threads, never leak into the next). Throughput landscapes are irregular,
so the best single trial is an optimistic estimate (it won a noisy race); the result therefore
measures the best settings and the engine's defaults again, alternately, `confirm` times each,
and reports the improvement of the medians with a bootstrap interval over the paired ratios.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..engine import Knob
from ..errors import InvalidParameterError, UnillmError
from .deps import require_tune
from .jobs import fixed_length_params
from .prompts import LengthDist, latency_prompts, prompt_set_name, sample_lengths
from .results import new_result, timing_from_wire
from .runner import NullReporter, Reporter
from .worker import Worker

OBJECTIVES: dict[str, tuple[str, str]] = {
    "throughput": ("maximize", "output tokens/s"),
    "latency": ("minimize", "median end-to-end latency (s)"),
}
CALL_PREFIX = "call."
"""Knobs of the bench's own calls carry this prefix in trial parameters (never an option name)."""


@dataclass(frozen=True)
class Workload:
    """What one trial measures. latency: batch 1, `prompts` prompts of the shipped set,
    `max_tokens` tokens each. throughput: `num_prompts` prompts of `input_len` tokens, exactly
    `output_len` tokens each."""

    objective: str
    prompts: int = 4
    max_tokens: int = 64
    num_prompts: int = 32
    input_len: int = 64
    output_len: int = 64
    warmup: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective = {self.objective!r} is not allowed: one of "
                             f"{', '.join(OBJECTIVES)}")

    def call_knobs(self) -> dict[str, Knob]:
        if self.objective == "throughput" and self.num_prompts > 1:
            return {"batch_size": Knob("int", 1, self.num_prompts, log=True,
                                       help="prompts per generate call (the bench's own knob)")}
        return {}

    def call_defaults(self) -> dict[str, Any]:
        """What an untuned caller does: hand every prompt to one generate call."""
        return {"batch_size": self.num_prompts} if self.objective == "throughput" else {}

    def round(self, call: Mapping[str, Any], warmup: bool) -> tuple[str, dict[str, Any]]:
        if self.objective == "latency":
            return "latency", {"prompts": latency_prompts(self.prompts),
                               "max_tokens": self.max_tokens, "warmup": self.warmup if warmup else 0}
        lengths = sample_lengths(self.num_prompts, LengthDist(self.input_len),
                                 LengthDist(self.output_len), self.seed)
        return "throughput", {"lengths": lengths, "seed": self.seed, "warmup": warmup,
                              "batch_size": int(call.get("batch_size", self.num_prompts))}

    def value(self, output: Mapping[str, Any]) -> float:
        """The objective from one round's output; a wrong token count is a failed run."""
        if self.objective == "latency":
            timings = [timing_from_wire(r["timing"]) for r in output["requests"]]
            bad = [t.output_tokens for t in timings if t.output_tokens != self.max_tokens]
            if bad:
                raise UnillmError(f"{len(bad)} requests produced {bad[:3]} tokens instead of "
                                  f"{self.max_tokens}")
            return statistics.median(t.e2e for t in timings)
        wrong = [r for r in output["requests"]
                 if timing_from_wire(r["timing"]).output_tokens != r["expected"]]
        if wrong:
            raise UnillmError(f"{len(wrong)} requests did not produce their requested token count")
        return float(output["run"]["output_throughput"])


def _knob_dict(knob: Knob, scope: str) -> dict[str, Any]:
    d = asdict(knob)
    d["choices"] = list(d["choices"])
    d["scope"] = scope
    return d


def search_space(engine: str, workload: Workload, *, knobs: Sequence[str] | None = None,
                 fixed: Mapping[str, Any] | None = None) -> dict[str, tuple[Knob, str]]:
    """name -> (knob, scope) for this engine and workload: its declared tunables (scope
    ``load``) plus the bench's call knobs (scope ``call``), minus the options the caller fixed,
    restricted to `knobs` when given."""
    from ..registry import registry

    info = registry().get(engine)
    cls = info.engine_class
    assert cls is not None
    fields = cls.Options.model_fields
    space: dict[str, tuple[Knob, str]] = {}
    for name, knob in cls.tunables.items():
        if name not in fields:
            raise UnillmError(
                f"engine {info.name!r} declares tunable {name!r}, which is not one of its "
                f"options ({', '.join(fields)}): tunables must name load options"
            )
        space[name] = (knob, "load")
    for name, knob in workload.call_knobs().items():
        space[CALL_PREFIX + name] = (knob, "call")
    for name in fixed or {}:
        space.pop(name, None)
    if knobs:
        wanted = {CALL_PREFIX + k if CALL_PREFIX + k in space else k for k in knobs}
        unknown = sorted(wanted - set(space))
        if unknown:
            shown = [k.removeprefix(CALL_PREFIX) for k in space]
            raise InvalidParameterError("knobs", unknown, f"knobs of {info.name!r}: "
                                        f"{', '.join(shown) or 'none'}", owner="tune")
        space = {k: v for k, v in space.items() if k in wanted}
    if not space:
        raise UnillmError(f"engine {info.name!r} has nothing to tune for the {workload.objective} "
                          "objective: it declares no tunables (see docs/plugins.md, 'Declare "
                          "tunable knobs')")
    return space


def _suggest(trial: Any, name: str, knob: Knob) -> Any:
    if knob.kind == "choice":
        return trial.suggest_categorical(name, list(knob.choices))
    if knob.low is None or knob.high is None:
        raise UnillmError(f"knob {name!r} of kind {knob.kind!r} needs low and high")
    if knob.kind == "int":
        return trial.suggest_int(name, int(knob.low), int(knob.high), log=knob.log)
    return trial.suggest_float(name, float(knob.low), float(knob.high), log=knob.log)


def _split(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    options = {k: v for k, v in params.items() if not k.startswith(CALL_PREFIX)}
    call = {k.removeprefix(CALL_PREFIX): v for k, v in params.items() if k.startswith(CALL_PREFIX)}
    return options, call


class _Config:
    """One configuration loaded in its own worker, measured on demand."""

    def __init__(self, engine: str, model: str, options: Mapping[str, Any],
                 call: Mapping[str, Any], workload: Workload, isolate: bool):
        self.workload = workload
        self.call = dict(call)
        self.worker = Worker(isolate=isolate)
        try:
            self.load = self.worker.call("load", {"engine": engine, "model": model,
                                                  "options": dict(options)})
        except BaseException:
            self.worker.close()
            raise
        self.measured = 0

    def measure(self, progress=None) -> float:
        op, payload = self.workload.round(self.call, warmup=self.measured == 0)
        self.measured += 1
        return self.workload.value(self.worker.call(op, payload, progress))

    def close(self) -> None:
        self.worker.close()


def _measure_once(engine, model, options, call, workload, isolate) -> tuple[float, float]:
    config = _Config(engine, model, options, call, workload, isolate)
    try:
        return config.measure(), config.load["load_s"]
    finally:
        config.close()


def paired_improvement(default: Sequence[float], best: Sequence[float], direction: str,
                       *, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Improvement of `best` over `default` from interleaved pairs, as a fraction (+0.10 =
    10 % better), with a 90 % bootstrap interval of the median paired ratio.

    For "maximize" the ratio of a pair is best/default, for "minimize" default/best, so a
    positive improvement always means better."""
    pairs = list(zip(default, best))
    ratios = [(b / d if direction == "maximize" else d / b) for d, b in pairs if d > 0 and b > 0]
    if not ratios:
        return {"improvement": None, "ci90": None, "pair_ratios": []}
    rng = random.Random(seed)
    medians = sorted(
        statistics.median(rng.choice(ratios) for _ in ratios) for _ in range(resamples)
    )
    lo = medians[int(0.05 * (resamples - 1))]
    hi = medians[int(0.95 * (resamples - 1))]
    dm, bm = statistics.median(default), statistics.median(best)
    of_medians = (bm / dm if direction == "maximize" else dm / bm) - 1
    return {
        "improvement": of_medians,
        "median_pair_improvement": statistics.median(ratios) - 1,
        "ci90": [lo - 1, hi - 1],
        "pair_ratios": ratios,
        "cv": {"default": _cv(default), "best": _cv(best)},
    }


def _cv(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.pstdev(values) / mean if mean else None


def run_tune(
    engine: str,
    model: str,
    *,
    objective: str = "throughput",
    trials: int = 20,
    timeout: float | None = None,
    confirm: int = 5,
    knobs: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
    workload: Workload | None = None,
    seed: int = 0,
    isolate: bool = True,
    reporter: Reporter | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Tune `engine` on `model`; returns the result (kind ``tune``, see docs/bench.md).

    `options` are fixed load options applied to every configuration, the defaults included
    (e.g. ``device``); `trials` and `timeout` (seconds, checked between trials) bound the
    search; `confirm` is how many times the best and the defaults are each measured again,
    alternately, for the reported improvement.
    """
    require_tune()  # before any work: a clear line, not a ModuleNotFoundError
    import optuna

    from ..registry import registry

    reporter = reporter or NullReporter()
    workload = workload or Workload(objective)
    if workload.objective != objective:
        raise ValueError("the workload's objective differs from `objective`")
    direction, unit = OBJECTIVES[objective]
    name = registry().get(engine).name
    fixed = dict(options or {})
    space = search_space(name, workload, knobs=knobs, fixed=fixed)
    fixed_length_params(workload.max_tokens if objective == "latency" else workload.output_len)
    parameters = {
        "engine": name, "model": model, "objective": objective, "direction": direction,
        "unit": unit, "trials": trials, "timeout_s": timeout, "confirm": confirm, "seed": seed,
        "fixed_options": fixed, "isolate": isolate, "workload": asdict(workload),
        "prompt_set": prompt_set_name(), "sampler": "optuna TPESampler",
        "knobs": {k.removeprefix(CALL_PREFIX): _knob_dict(kn, scope) for k, (kn, scope) in space.items()},
    }
    result = new_result("tune", parameters, command)
    del result["runs"]
    call_defaults = workload.call_defaults()

    def better(a: float, b: float) -> bool:
        return a > b if direction == "maximize" else a < b

    # 1. the engine's defaults (plus the fixed options), measured like a trial
    reporter.message(f"{name}: measuring the defaults")
    default: dict[str, Any] = {"options": fixed, "call": call_defaults, "value": None, "error": None}
    try:
        default["value"], default["load_s"] = _measure_once(name, model, fixed, call_defaults,
                                                            workload, isolate)
        reporter.message(f"defaults: {default['value']:.4g} {unit}")
    except Exception as exc:  # noqa: BLE001
        default["error"] = str(exc)
        reporter.message(f"defaults failed: {exc}")
    result["default"] = default

    # 2. the search
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction,
                                sampler=optuna.samplers.TPESampler(seed=seed))
    advance = reporter.task(f"{name} trials", trials)
    records: list[dict[str, Any]] = []
    started = time.monotonic()
    for _ in range(trials):
        if timeout is not None and time.monotonic() - started > timeout:
            reporter.message(f"time budget of {timeout:.0f}s reached after {len(records)} trials")
            break
        trial = study.ask()
        params = {k: _suggest(trial, k, knob) for k, (knob, _) in space.items()}
        opts, call = _split(params)
        entry: dict[str, Any] = {"number": trial.number, "options": opts,
                                 "call": {**call_defaults, **call}, "value": None,
                                 "state": "complete", "error": None}
        t0 = time.monotonic()
        try:
            entry["value"], entry["load_s"] = _measure_once(
                name, model, {**fixed, **opts}, entry["call"], workload, isolate)
            study.tell(trial, entry["value"])
        except Exception as exc:  # noqa: BLE001 - a failing configuration is a failed trial
            entry["state"] = "fail"
            entry["error"] = str(exc).splitlines()[0]
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        entry["duration_s"] = time.monotonic() - t0
        records.append(entry)
        shown = f"{entry['value']:.4g} {unit}" if entry["value"] is not None else f"failed: {entry['error']}"
        reporter.message(f"trial {trial.number}: {_fmt(params)} -> {shown}")
        advance(1)
    result["trials"] = records
    result["search_s"] = time.monotonic() - started

    done = [r for r in records if r["value"] is not None]
    if not done:
        result["ok"] = False
        result["best"] = None
        result["confirmation"] = None
        return result
    top = done[0]
    for r in done[1:]:
        if better(r["value"], top["value"]):
            top = r
    result["best"] = {"trial": top["number"], "options": {**fixed, **top["options"]},
                      "call": top["call"], "value": top["value"]}

    # 3. confirm: best and defaults, loaded side by side, measured alternately
    result["confirmation"] = None
    if confirm > 0 and default["value"] is not None:
        result["confirmation"] = _confirm(name, model, fixed, call_defaults, result["best"],
                                          workload, confirm, direction, isolate, reporter, seed)
    result["ok"] = result["confirmation"] is not None and result["confirmation"].get("error") is None
    # The search's best won a noisy race; it is recommended only where the interleaved
    # confirmation (else, without one, the search itself) says it beats the defaults.
    conf = result["confirmation"] or {}
    if conf.get("improvement") is not None:
        tuned_wins = conf["improvement"] > 0
    else:
        tuned_wins = default["value"] is None or better(top["value"], default["value"])
    result["recommended"] = "tuned" if tuned_wins else "defaults"
    chosen = result["best"] if tuned_wins else {"options": fixed, "call": call_defaults}
    result["load"] = {"engine": name, "options": chosen["options"], "call": chosen["call"]}
    return result


def _confirm(engine, model, fixed, call_defaults, best, workload, repeats, direction, isolate,
             reporter, seed) -> dict[str, Any]:
    reporter.message(f"confirming: defaults vs best, {repeats} interleaved repeats each")
    advance = reporter.task("confirm (defaults, best alternately)", 2 * repeats)
    values: dict[str, list[float]] = {"default": [], "best": []}
    configs: dict[str, _Config] = {}
    out: dict[str, Any] = {"repeats": repeats, "order": "interleaved, alternating first"}
    try:
        configs["default"] = _Config(engine, model, fixed, call_defaults, workload, isolate)
        configs["best"] = _Config(engine, model, best["options"], best["call"], workload, isolate)
        for k in range(repeats):
            order = ("default", "best") if k % 2 == 0 else ("best", "default")
            for which in order:
                values[which].append(configs[which].measure())
                advance(1)
    except Exception as exc:  # noqa: BLE001
        out["error"] = str(exc)
    finally:
        for c in configs.values():
            c.close()
    out.update(values)
    if values["default"] and len(values["default"]) == len(values["best"]):
        out["default_median"] = statistics.median(values["default"])
        out["best_median"] = statistics.median(values["best"])
        out.update(paired_improvement(values["default"], values["best"], direction, seed=seed))
    return out


def _fmt(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k.removeprefix(CALL_PREFIX)}={v}" for k, v in params.items())


def load_tuned(path: str, model: str | None = None):
    """`unillm.load` with the best settings of a tune result file: the engine and options it
    found (on `model`, or the model that was tuned)."""
    import unillm

    from .results import load_result

    result = load_result(path)
    if result.get("kind") != "tune" or not result.get("load"):
        raise ValueError(f"{path}: not a tune result with a best configuration")
    from unillm.testing import resolve_model

    return unillm.load(result["load"]["engine"], resolve_model(model or result["parameters"]["model"]),
                       **result["load"]["options"])
