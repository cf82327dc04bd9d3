"""Each contestant is measured in its own process.

Why a process: peak resident memory is a per-process figure (getrusage), and engines set
process-wide state (torch's thread count, allocator caches, CUDA contexts) that would leak from
one engine, or one tune trial, into the next and make the comparison unfair. A spawned worker
loads one engine once and then runs measurement jobs on command, so several workers can be kept
loaded and measured in alternation (interleaving) while only one of them runs at a time.

`Worker(isolate=False)` runs the same jobs in this process instead: for engines registered at
run time (`unillm.register_plugin`), which a fresh process cannot see, and for debugging.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from ..errors import UnillmError, WorkerError
from .jobs import measure_latency, measure_quality, measure_throughput

Progress = Callable[[int], None]


class Session:
    """What a worker holds: one loaded engine. Its methods are the jobs a worker runs (the
measurements themselves are in `jobs`, below every kind of bench)."""

    def __init__(self) -> None:
        self.gen = None

    def load(self, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        import unillm
        from unillm.testing import resolve_model

        from ..timing import now

        start = now()
        model = resolve_model(payload["model"])
        built = now()
        self.gen = unillm.load(payload["engine"], model, **payload.get("options", {}))
        info = self.gen.info
        return {
            "load_s": now() - built, "model_build_s": built - start, "model_path": model,
            "engine_info": _jsonable(info),
            # as the worker's environment has them (it may be another one: EngineSpec.python)
            "engine_packages": _engine_packages(payload["engine"]), "python": sys.executable,
        }

    def latency(self, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        return measure_latency(self._gen(), payload, progress)

    def throughput(self, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        return measure_throughput(self._gen(), payload, progress)

    def quality(self, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        return measure_quality(self._gen(), payload, progress)

    def memory(self, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        from ..timing import peak_memory

        return peak_memory()

    def close(self, payload: dict[str, Any] | None = None, progress: Progress | None = None) -> None:
        if self.gen is not None:
            self.gen.close()
            self.gen = None

    def _gen(self):
        if self.gen is None:
            raise WorkerError("no engine loaded in this worker")
        return self.gen


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _exit_with_parent() -> None:
    """End this worker as soon as the process that started it is gone (killed, crashed), even
    in the middle of a long measurement: nobody is left to read its results."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, daemon=True, name="unillm-bench-parent-watch").start()


def _child_main(events_fd: int) -> None:
    """The worker process: read one JSON command per line on stdin, answer on `events_fd`,
    until stdin closes. Its stdout/stderr (engine chatter) go to the log file the parent set."""
    events = os.fdopen(events_fd, "w", encoding="utf-8", buffering=1)
    _exit_with_parent()

    def send(*event: Any) -> None:
        events.write(json.dumps(event, default=str) + "\n")
        events.flush()

    session = Session()
    for line in sys.stdin:
        if not line.strip():
            continue
        op, payload = json.loads(line)
        try:
            result = getattr(session, op)(payload, lambda n=1: send("progress", n))
            send("result", result)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, never lost
            send("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())
    session.close()


def _engine_packages(name: str) -> dict[str, str | None]:
    import unillm

    from .machine import module_versions

    info = next((i for i in unillm.engines() if i.name == name), None)
    return module_versions(list(info.requires)) if info is not None else {}


def _worker_env(python: str | None) -> dict[str, str] | None:
    """Another environment's interpreter runs this unillm, not the one installed there (the
    bench's jobs and wire format must match the parent's)."""
    if not python:
        return None
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


class Worker:
    """A handle on one measuring process (or on an in-process `Session`).

    The process is ``python -m unillm.bench.worker``, not a multiprocessing child, so the
    caller's script needs no ``if __name__ == "__main__"`` guard and is never re-imported.
    """

    def __init__(self, isolate: bool = True, python: str | None = None):
        if python and not isolate:
            raise ValueError("a worker with its own python runs in its own process: "
                             "python= needs isolate=True")
        self.isolate = isolate
        self._session = None if isolate else Session()
        self._proc: subprocess.Popen | None = None
        self._log_path: str | None = None
        self._events: queue.Queue = queue.Queue()
        if isolate:
            fd, self._log_path = tempfile.mkstemp(prefix="unillm-bench-", suffix=".log")
            read_fd, write_fd = os.pipe()
            try:
                self._proc = subprocess.Popen(
                    [python or sys.executable, "-m", "unillm.bench.worker", str(write_fd)],
                    stdin=subprocess.PIPE, stdout=fd, stderr=fd, pass_fds=(write_fd,),
                    text=True, encoding="utf-8", env=_worker_env(python),
                )
            finally:
                os.close(write_fd)
                os.close(fd)
            reader = threading.Thread(target=self._read, args=(read_fd,), daemon=True,
                                      name="unillm-bench-worker-events")
            reader.start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, encoding="utf-8") as fh:
            for line in fh:
                self._events.put(json.loads(line))
        self._events.put(None)  # the process closed its end: it has exited

    def call(self, op: str, payload: dict[str, Any] | None = None,
             progress: Progress | None = None) -> Any:
        """Run job `op` and return its result; `progress(n)` is called as work advances."""
        progress = progress or (lambda n=1: None)
        if self._session is not None:
            try:
                return getattr(self._session, op)(payload or {}, progress)
            except UnillmError:
                raise
            except Exception as exc:
                raise WorkerError(f"{type(exc).__name__}: {exc}") from exc
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise WorkerError("this worker was closed")
        try:
            proc.stdin.write(json.dumps([op, payload or {}]) + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died; reported below with its exit code
        while True:
            event = self._events.get()
            if event is None:
                self._events.put(None)
                code = proc.wait()
                raise WorkerError(
                    f"the worker process died (exit code {code}) during {op!r}{self._log_tail()}"
                )
            kind = event[0]
            if kind == "progress":
                progress(event[1])
            elif kind == "result":
                return event[1]
            else:
                raise WorkerError(f"{event[1]}{self._log_tail()}")

    def _log_tail(self, lines: int = 15) -> str:
        if not self._log_path:
            return ""
        try:
            with open(self._log_path, encoding="utf-8", errors="replace") as fh:
                tail = fh.readlines()[-lines:]
        except OSError:
            return ""
        tail = [t for t in tail if t.strip()]
        return ("\nworker log (last lines):\n" + "".join(tail)) if tail else ""

    def close(self) -> None:
        """Free the engine and end the process (killed if it does not exit promptly)."""
        if self._session is not None:
            self._session.close()
            return
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # end of commands: the worker closes its engine and exits
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout=10)
        if self._log_path:
            try:
                os.unlink(self._log_path)
            except OSError:
                pass

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    _child_main(int(sys.argv[1]))
