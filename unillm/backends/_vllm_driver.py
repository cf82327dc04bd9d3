"""One thread that owns a vLLM `LLMEngine` and serves every call made on it.

vLLM's `AsyncLLM` cannot run its engine in the caller's process ("Running EngineCore in asyncio
without multiprocessing is not currently supported"), and a second process needs an
``if __name__ == "__main__"`` guard on CPU, where vLLM always spawns. So unillm drives the
synchronous `LLMEngine` itself, as `LLM.generate` does (add requests, `step()` until none is
unfinished), but from one long-lived thread: batch calls, token-by-token streams and asyncio
callers all add requests to the same running engine, which batches them continuously.

Only this thread touches the engine. Callers post operations (add, abort) and receive each
request's outputs through a `Waiter`. If the engine raises (or its process dies), every waiting
caller gets an `EngineError`, later calls are refused with the cause, and the caller's process
keeps running.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import EngineError, GeneratorClosedError


class Waiter:
    """Receives a group of requests' outputs on the engine thread; must not block."""

    def deliver(self, output: Any) -> None:
        raise NotImplementedError

    def fail(self, error: BaseException) -> None:
        raise NotImplementedError

    def flush(self) -> None:  # noqa: B027 - optional
        """Called on the engine thread after a step's outputs were all delivered (to hand a
        whole step over at once)."""


class Collect(Waiter):
    """The final output of each request of a batch; `notify()` once all have one, or on failure."""

    def __init__(self, request_ids: Sequence[str], notify: Callable[[], None]):
        self.pending = set(request_ids)
        self.outputs: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.notify = notify

    @property
    def done(self) -> bool:
        return self.error is not None or not self.pending

    def deliver(self, output: Any) -> None:
        if output.finished:
            self.outputs[output.request_id] = output
            self.pending.discard(output.request_id)
            if not self.pending:
                self.notify()

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
            self.notify()


class Forward(Waiter):
    """Hands every output (and a failure, as the exception itself) to `put` (a stream's queue)."""

    def __init__(self, put: Callable[[Any], None]):
        self.put = put

    def deliver(self, output: Any) -> None:
        self.put(output)

    def fail(self, error: BaseException) -> None:
        self.put(error)


Item = tuple[str, Any, Any, float]  # request id, prompt, vllm.SamplingParams, arrival wall time


class Driver:
    """Runs `engine.step()` on its own thread while any request is unfinished."""

    def __init__(self, engine: Any, *, fatal: tuple[type[BaseException], ...] = ()):
        self.engine = engine
        self.fatal = fatal  # errors of add_request that mean the engine itself is gone
        self._cond = threading.Condition()
        self._ops: list[Callable[[], None]] = []
        self._waiters: dict[str, Waiter] = {}
        self._failure: BaseException | None = None
        self._closing = False
        self._ids = itertools.count()
        self._thread = threading.Thread(target=self._run, name="unillm-vllm-engine", daemon=True)
        self._thread.start()

    # -- called from any thread ------------------------------------------------------------
    def new_id(self) -> str:
        return f"unillm-{next(self._ids)}"

    def submit(self, items: Sequence[Item], waiter: Waiter) -> None:
        """Add requests; their outputs go to `waiter` (a refused request fails it)."""
        ids = [item[0] for item in items]

        def add() -> None:
            added: list[str] = []
            try:
                for request_id, prompt, params, arrival in items:
                    self.engine.add_request(request_id, prompt, params, arrival_time=arrival)
                    added.append(request_id)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                if isinstance(exc, self.fatal):
                    raise  # the engine is gone: _run fails everyone
                with self._cond:
                    for request_id in ids:
                        self._waiters.pop(request_id, None)
                if added:
                    self.engine.abort_request(added)
                waiter.fail(exc)

        self._post(add, {request_id: waiter for request_id in ids})

    def abort(self, request_ids: Sequence[str]) -> None:
        """Stop requests (a closed stream, an interrupted call); quietly, if already over."""

        def abort() -> None:
            with self._cond:
                live = [r for r in request_ids if self._waiters.pop(r, None) is not None]
            if live:
                self.engine.abort_request(live)

        try:
            self._post(abort)
        except (EngineError, GeneratorClosedError):
            pass

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread; requests still running fail with `GeneratorClosedError`."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _post(self, op: Callable[[], None], waiters: dict[str, Waiter] | None = None) -> None:
        with self._cond:
            if self._failure is not None:
                raise self._dead_error()
            if self._closing:
                raise GeneratorClosedError("this vLLM engine was closed; call unillm.load() again")
            if waiters:
                self._waiters.update(waiters)
            self._ops.append(op)
            self._cond.notify()

    def _dead_error(self) -> EngineError:
        exc = self._failure
        err = EngineError(
            "vllm", f"the vLLM engine stopped working ({type(exc).__name__}: {exc}); "
            "load the model again with unillm.load()",
        )
        err.__cause__ = exc
        return err

    # -- the engine thread -----------------------------------------------------------------
    def _run(self) -> None:
        busy = False
        try:
            while True:
                with self._cond:
                    while not (busy or self._ops or self._closing):
                        self._cond.wait()
                    ops, self._ops = self._ops, []
                    if self._closing:
                        break
                for op in ops:
                    op()
                busy = self.engine.has_unfinished_requests()
                if busy:
                    outputs = self.engine.step()
                    stepped: dict[int, Waiter] = {}
                    with self._cond:
                        for output in outputs:
                            waiter = self._waiters.get(output.request_id)
                            if waiter is not None:
                                if output.finished:
                                    del self._waiters[output.request_id]
                                waiter.deliver(output)
                                stepped[id(waiter)] = waiter
                    for waiter in stepped.values():
                        waiter.flush()
                    busy = self.engine.has_unfinished_requests()
        except BaseException as exc:  # noqa: BLE001 - the engine died: tell every caller
            with self._cond:
                self._failure = exc
            self._fail_all(self._dead_error())
            return
        self._fail_all(GeneratorClosedError("the vLLM engine was closed while this request ran"))

    def _fail_all(self, error: BaseException) -> None:
        with self._cond:
            waiters = set(self._waiters.values())
            self._waiters.clear()
            self._ops.clear()
        for waiter in waiters:
            waiter.fail(error)
