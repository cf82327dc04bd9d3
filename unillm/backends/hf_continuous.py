"""The transformers engine's running batch: transformers' own continuous-batching manager.

`model.init_continuous_batching(...)` gives a `ContinuousBatchingManager`: a background thread
that runs one forward pass per step over every request it holds, on a paged KV cache, taking new
requests in (and dropping cancelled ones) between steps. A server request joins at the next
step instead of waiting for a whole batch to end, and a finished or cancelled request's blocks
go to the next one at once.

What that path can vary per request, and so what this batch accepts (`refusal`): the prompt,
`max_tokens`, the terminators (eos unless `ignore_eos`, `stop_token_ids`) and, when sampling,
`temperature`, `top_k` and `top_p` (transformers' per-request warpers,
`cb_logits_processors.py`). Greedy and sampling are two managers (the choice between argmax and
a draw is the manager's, not the request's), each with its own cache. Not honoured per
request there, so refused (those requests take the engine's static batches):
`n` > 1, `seed` when sampling (a seeded sample must not depend on its batch-mates),
`min_tokens` (unless nothing could stop the sample early), `min_p`, the three penalties,
`logprobs`, `structured`, and a prompt + `max_tokens` larger than the cache.

The engine's static path (`generate`, static `stream_batch`) runs with both managers paused
(`alone`): a `model.generate` call running while a manager steps was measured to change the
static call's greedy tokens, so the two never overlap (the manager's `pause()` is transformers'
way to lend its model to another thread; it keeps the running requests and their cache).

Exactness: the manager computes logits in float32 and takes the argmax (greedy) as `generate`
does; tests/serve/test_running_batch.py checks greedy tokens equal the static path's.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from typing import Any

from ..engine import EngineRequest, EngineResult, RunningBatch, StepSink, TokenEvent

PAGE_TOKENS = 32
"""Tokens per KV-cache page: small, so a short request holds little memory it does not use."""

STEP_TOKENS = 512
"""Most tokens one step processes (prompt chunks and one token per decoding request): longer
prompts are prefilled over several steps, so decoding requests keep their pace."""


@contextlib.contextmanager
def alone(running: HFRunningBatch | None) -> Iterator[None]:
    """The model to the calling thread alone: the running batch (if any) paused meanwhile."""
    if running is None:
        yield
        return
    with contextlib.ExitStack() as stack:
        for manager in running.managers():
            if manager.manager.is_running():
                stack.enter_context(manager.manager.pause())
        yield


def running_batch_for(engine: Any) -> HFRunningBatch | None:
    """The engine's running batch, or None where this path does not apply: turned off
    (`continuous_batching=False`), a quantized model (its layers are untested on this path),
    or an attention that transformers cannot page (eager would be switched to "paged|eager"
    for the whole model, breaking the static batches that run beside it)."""
    attention = engine.model_obj.config._attn_implementation or ""
    if (not engine.options.continuous_batching or engine.quantization is not None
            or not hasattr(engine.model_obj, "init_continuous_batching")
            or not (attention == "sdpa" or attention.startswith("flash"))):
        return None
    return HFRunningBatch(engine, max_requests=engine.options.max_batch_size or 64,
                          cache_tokens=engine.options.kv_cache_tokens)


class HFRunningBatch(RunningBatch):
    """One running batch over a transformers model (see the module doc)."""

    def __init__(self, engine: Any, *, max_requests: int, cache_tokens: int):
        self.engine = engine
        self.max_requests = max_requests
        self.cache_tokens = cache_tokens
        self._owner: dict[EngineRequest, _Manager] = {}
        self._lock = threading.Lock()
        self._closed = False
        # Both made now (not on first use): making one takes a while, and must not happen on
        # a server's event loop nor while the static path holds the model (`alone`).
        self._managers: dict[bool, _Manager] = {False: _Manager(self, False)}
        try:
            self._managers[True] = _Manager(self, True)
        except BaseException:
            self._managers[False].close()
            raise

    def managers(self) -> list[_Manager]:
        with self._lock:
            return list(self._managers.values())

    def refusal(self, request: EngineRequest) -> str | None:
        p = request.params
        if p.n > 1:
            return "n"
        if p.seed is not None and not p.is_greedy:
            return "seed"
        if p.min_tokens and self._terminators(request):
            return "min_tokens"
        for name in ("min_p", "repetition_penalty", "presence_penalty", "frequency_penalty",
                     "logprobs", "prompt_logprobs", "structured", "logit_bias",
                     "allowed_token_ids", "bad_words"):
            if getattr(p, name) != type(p).model_fields[name].default:
                return name
        if len(request.prompt_token_ids or ()) + p.max_tokens > self.cache_tokens:
            return "prompt"
        return None

    def _terminators(self, request: EngineRequest) -> list[int]:
        p = request.params
        ids = set(p.stop_token_ids)
        if not p.ignore_eos:
            ids |= self.engine.tokenizer.eos_token_ids
        return sorted(ids)

    def add(self, request: EngineRequest, sink: StepSink) -> None:
        sampling = not request.params.is_greedy
        with self._lock:
            if self._closed:
                raise RuntimeError("the engine was closed")
            manager = self._managers[sampling]
            self._owner[request] = manager
        manager.add(request, sink, self._terminators(request))

    def cancel(self, request: EngineRequest) -> None:
        with self._lock:
            manager = self._owner.pop(request, None)
        if manager is not None:
            manager.cancel(request)

    def _forget(self, request: EngineRequest) -> None:
        with self._lock:
            self._owner.pop(request, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            managers = list(self._managers.values())
            self._managers.clear()
        for manager in managers:
            manager.close()


class _Route:
    """Where one request's outputs go, and how many of its tokens went already."""

    __slots__ = ("delivered", "record", "reported", "request", "sink", "terminators")

    def __init__(self, request: EngineRequest | None, sink: StepSink, record: dict[str, Any],
                 terminators: frozenset[int] = frozenset()):
        self.request, self.sink, self.record = request, sink, record
        self.terminators = terminators
        self.delivered = 0
        self.reported = False


class _Manager:
    """One `ContinuousBatchingManager` and the thread that hands its outputs to the sinks."""

    _ids = itertools.count()

    def __init__(self, batch: HFRunningBatch, sampling: bool):
        from transformers import ContinuousBatchingConfig, GenerationConfig

        engine = batch.engine
        self.batch = batch
        self.sampling = sampling
        vocab = engine.model_obj.get_output_embeddings().weight.shape[0]
        self.vocab = vocab
        # The warpers exist only if the config asks for them; every request then sends its
        # own values (these defaults are never used).
        warpers = {"temperature": 0.5, "top_k": vocab, "top_p": 0.5} if sampling else {}
        generation = GenerationConfig(
            do_sample=sampling, max_new_tokens=16, pad_token_id=engine.pad_token_id,
            eos_token_id=sorted(engine.tokenizer.eos_token_ids) or -1, num_beams=1,
            repetition_penalty=1.0, **warpers)
        pages = -(-batch.cache_tokens // PAGE_TOKENS)
        config = ContinuousBatchingConfig(
            page_size=PAGE_TOKENS, num_blocks=pages, max_batch_tokens=STEP_TOKENS,
            max_requests_per_batch=batch.max_requests, per_request_processors=sampling,
            scheduler_type="fifo")
        with engine.torch.inference_mode():
            self.manager = engine.model_obj.init_continuous_batching(
                generation_config=generation, continuous_batching_config=config)
        self.sent = {"do_sample": sampling, "page_size": PAGE_TOKENS, "cache_pages": pages,
                     "max_batch_tokens": STEP_TOKENS,
                     "max_requests_per_batch": batch.max_requests}
        self._routes: dict[str, _Route] = {}
        self._by_request: dict[EngineRequest, str] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        started = threading.Event()
        # The manager's thread is started from this daemon thread so that it is a daemon too
        # (a thread inherits the flag): an unclosed engine must not keep the process alive.
        self._reader = threading.Thread(target=self._read, args=(started,), daemon=True,
                                        name="unillm-transformers-continuous")
        self._reader.start()
        started.wait()
        self._warm_up(engine)

    def _warm_up(self, engine: Any) -> None:
        """One short request, so that the first client does not pay for the first steps'
        allocations."""
        rid = f"warmup-{next(self._ids)}"
        done = threading.Event()
        with self._lock:
            self._routes[rid] = _Route(None, lambda _events: done.set(), {})
        self._submit([engine.pad_token_id], rid, 2, False, [], self._warpers_of(None))
        if not done.wait(timeout=120) or not self.manager.is_running():
            self.close()
            raise RuntimeError("transformers' continuous-batching manager did not answer its "
                               "warm-up request (its loop stopped or hung)")

    def _submit(self, prompt: list[int], rid: str, max_new_tokens: int, streaming: bool,
                terminators: list[int], warpers: dict[str, Any]) -> None:
        added = self.manager.add_request(prompt, request_id=rid, max_new_tokens=max_new_tokens,
                                         streaming=streaming, eos_token_id=terminators,
                                         **warpers)
        if added is None:  # the manager is stopping: it drops the request
            with self._lock:
                self._routes.pop(rid, None)
            raise RuntimeError("transformers' continuous-batching manager is not accepting "
                               "requests (it is stopping)")

    def _warpers_of(self, request: EngineRequest | None) -> dict[str, Any]:
        if not self.sampling:
            return {}
        if request is None:
            return {"temperature": 1.0, "top_k": self.vocab, "top_p": 1.0}
        p = request.params
        return {"temperature": float(p.temperature),
                # k past the vocabulary keeps every token (as off does); transformers' top-k
                # warper indexes the sorted scores at k - 1, so it must not exceed the vocabulary
                "top_k": min(int(p.top_k), self.vocab) if p.top_k is not None else self.vocab,
                "top_p": float(p.top_p)}

    def add(self, request: EngineRequest, sink: StepSink, terminators: list[int]) -> None:
        p = request.params
        rid = f"unillm-{next(self._ids)}"
        warpers = self._warpers_of(request)
        record = {"continuous_batching": True, **self.sent, "max_new_tokens": p.max_tokens,
                  "eos_token_id": terminators or None, **warpers, "seed": p.seed}
        route = _Route(request, sink, record, frozenset(terminators))
        with self._lock:
            self._routes[rid] = route
            self._by_request[request] = rid
        try:
            self._submit(list(request.prompt_token_ids or ()), rid, p.max_tokens, True,
                         terminators, warpers)
        except BaseException:
            with self._lock:
                self._by_request.pop(request, None)
            raise

    def cancel(self, request: EngineRequest) -> None:
        with self._lock:
            rid = self._by_request.pop(request, None)
            if rid is not None:
                self._routes.pop(rid, None)
        if rid is not None:
            self.manager.cancel_request(rid)

    # -- the reader thread ---------------------------------------------------------------
    def _read(self, started: threading.Event) -> None:
        self.manager.start()
        started.set()
        get = self.manager.get_result
        while not self._stopping.is_set():
            first = get(timeout=0.2)
            if first is None:
                if not self.manager.is_running() and not self._stopping.is_set():
                    self._fail_all(RuntimeError("transformers' continuous-batching loop "
                                                "stopped"))
                    return
                continue
            outputs = [first]
            while (more := get(timeout=0)) is not None:  # the rest of this step
                outputs.append(more)
            self._dispatch(outputs)

    def _dispatch(self, outputs: list[Any]) -> None:
        at_sink: dict[int, tuple[StepSink, list]] = {}
        with self._lock:
            for out in outputs:
                route = self._routes.get(out.request_id)
                if route is None:
                    continue  # cancelled
                if route.request is None:  # the warm-up
                    if out.is_finished():
                        del self._routes[out.request_id]
                        route.sink([])
                    continue
                event = self._event(route, out)
                if out.is_finished():
                    del self._routes[out.request_id]
                    self._by_request.pop(route.request, None)
                    self.batch._forget(route.request)
                at_sink.setdefault(id(route.sink), (route.sink, []))[1].append(
                    (route.request, event))
        for sink, events in at_sink.values():
            sink(events)

    def _event(self, route: _Route, out: Any) -> TokenEvent | BaseException:
        if out.error is not None:
            return RuntimeError(f"transformers' continuous batching failed: {out.error}")
        tokens = out.generated_tokens
        new = tokens[route.delivered:]
        route.delivered = len(tokens)
        finish = stop_reason = None
        if out.is_finished():
            last = tokens[-1] if tokens else None
            if last is not None and last in route.terminators:
                finish = "stop"
                stop_reason = last if last in route.request.params.stop_token_ids else None
            else:
                finish = "length"
        result = None
        if not route.reported:  # what ran, once per request, with its first event
            route.reported = True
            result = EngineResult(received=route.record)
        return TokenEvent(0, tuple(new), finish_reason=finish, stop_reason=stop_reason,
                          result=result)

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            routes = list(self._routes.values())
            self._routes.clear()
            self._by_request.clear()
        for route in routes:
            if route.request is None:  # the warm-up: wake whoever waits for it
                route.sink([])
            else:
                self.batch._forget(route.request)
                route.sink([(route.request, error)])

    def close(self) -> None:
        self._stopping.set()
        try:
            self.manager.stop(block=True, timeout=10)
        finally:
            self._reader.join(timeout=10)
            self._fail_all(RuntimeError("the engine was closed"))

