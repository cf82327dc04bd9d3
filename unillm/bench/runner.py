"""Running the same rounds of work on several contestants, one at a time or interleaved.

Sequential (the default): each contestant is loaded, measured and closed before the next, so
only one model is in memory at a time (what large models on one GPU need). Interleaved: every
contestant is loaded first, then round k runs on each contestant in turn (the order rotating
each round), so a slow minute on a shared machine hurts every contestant alike.

A contestant that fails to load or fails a round is recorded with its error; the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .spec import EngineSpec
from .worker import Worker, WorkerError


class Reporter(Protocol):
    """Where progress goes: the CLI shows rich progress bars; the API default shows nothing."""

    def task(self, label: str, total: int) -> Callable[[int], None]:
        """Start a progress bar of `total` units; returns advance(n)."""

    def message(self, text: str) -> None:
        """A one-line note (loading, a failure)."""

    # Optional (called when present): round_done(label, done, rounds), after each of a
    # contestant's rounds (a pass over the prompts, a batch size), so that a log shows a line
    # per engine and pass.


class NullReporter:
    def task(self, label: str, total: int) -> Callable[[int], None]:
        return lambda n=1: None

    def message(self, text: str) -> None:
        pass

    def round_done(self, label: str, done: int, rounds: int) -> None:
        pass


@dataclass
class Round:
    """One unit of work for the worker: a job name, its payload, and its size in progress units."""

    op: str
    payload: dict[str, Any]
    units: int


@dataclass
class Outcome:
    """What happened to one contestant: its load facts, each round's output, its peak memory,
    and the first error (after which its remaining rounds were skipped)."""

    spec: EngineSpec
    load: dict[str, Any] | None = None
    outputs: list[Any] = field(default_factory=list)
    peak_memory: dict[str, Any] | None = None
    error: str | None = None


class _Contestant:
    def __init__(self, spec: EngineSpec, model: str, isolate: bool, reporter: Reporter,
                 total: int):
        self.spec = spec
        self.model = spec.model or model
        self.isolate = isolate
        self.reporter = reporter
        self.outcome = Outcome(spec)
        self.advance = reporter.task(spec.label, total)
        self.worker: Worker | None = None

    def load(self) -> None:
        self.reporter.message(f"{self.spec.label}: loading {self.model}")
        try:
            self.worker = Worker(isolate=self.isolate, python=self.spec.python)
            self.outcome.load = self.worker.call(
                "load", {"engine": self.spec.engine, "model": self.model,
                         "options": dict(self.spec.options)},
            )
        except Exception as exc:  # noqa: BLE001 - one contestant's failure is its result
            self.fail(exc)

    def run(self, rnd: Round, rounds: int) -> None:
        if self.outcome.error is not None or self.worker is None:
            return
        try:
            self.outcome.outputs.append(self.worker.call(rnd.op, rnd.payload, self.advance))
        except Exception as exc:  # noqa: BLE001
            self.fail(exc)
            return
        done = getattr(self.reporter, "round_done", None)
        if done is not None:
            done(self.spec.label, len(self.outcome.outputs), rounds)

    def finish(self) -> None:
        if self.worker is None:
            return
        try:
            if self.outcome.error is None:
                self.outcome.peak_memory = self.worker.call("memory")
        except Exception as exc:  # noqa: BLE001
            self.fail(exc)
        finally:
            self.worker.close()
            self.worker = None

    def fail(self, exc: BaseException) -> None:
        if self.outcome.error is None:
            # a WorkerError already names the engine's own exception type
            self.outcome.error = str(exc) if isinstance(exc, WorkerError) else (
                f"{type(exc).__name__}: {exc}")
            self.reporter.message(f"{self.spec.label}: failed: {self.outcome.error.splitlines()[0]}")


def run_contestants(
    specs: Sequence[EngineSpec],
    model: str,
    rounds: Callable[[EngineSpec], list[Round]],
    *,
    interleave: bool = False,
    isolate: bool = True,
    reporter: Reporter | None = None,
) -> list[Outcome]:
    """Run `rounds(spec)` on every contestant; returns their outcomes in `specs` order."""
    reporter = reporter or NullReporter()
    plans = [rounds(s) for s in specs]
    contestants = [
        _Contestant(s, model, isolate, reporter, sum(r.units for r in plan))
        for s, plan in zip(specs, plans)
    ]
    try:
        if not interleave:
            for c, plan in zip(contestants, plans):
                c.load()
                for rnd in plan:
                    c.run(rnd, len(plan))
                c.finish()
        else:
            for c in contestants:
                c.load()
            longest = max((len(p) for p in plans), default=0)
            for k in range(longest):
                shift = k % max(len(contestants), 1)
                for c, plan in (list(zip(contestants, plans))[shift:]
                                + list(zip(contestants, plans))[:shift]):
                    if k < len(plan):
                        c.run(plan[k], len(plan))
            for c in contestants:
                c.finish()
    finally:
        for c in contestants:
            if c.worker is not None:
                c.worker.close()
    return [c.outcome for c in contestants]
