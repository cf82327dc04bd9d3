"""llama.cpp as a unillm engine, through llama-cpp-python's low-level API.

The model is a .gguf file, or a Hugging Face directory converted once (and cached) to the
`quantization` type asked for. Generation evaluates the prompt, then alternates llama.cpp's
sampler chain (`sampling.SamplerChain`, built from unillm's parameters) with one-token
evaluations, yielding token ids: unillm detokenizes incrementally. `Llama(stream=True)` is not
used because it re-decodes the whole text at every token and slows down with length, and
`Llama.generate` because its sampler chain carries llama.cpp's defaults.

`generate` and `stream` run one sequence at a time: a batch is a loop, each prompt with its
own parameters (`batch_params="per_request"`); unillm emulates `n` (seed + i per sample) and
stop strings (through `request.should_stop`, so generation ends at the match). `unillm serve`
and `stream_many` decode up to `parallel` sequences together in one `llama_decode` batch
(`running_batch`, batching.py). Both paths sample through `sequence.Sequence`.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterator
from collections.abc import Sequence as Seq
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from unillm import (
    Capabilities,
    Engine,
    EngineOptions,
    EngineRequest,
    EngineResult,
    EngineSequence,
    InvalidParameterError,
    InvalidPromptError,
    Knob,
    PartialBatchFailure,
    ScoreRequest,
    ScoreResult,
    TokenEvent,
    TokenLogprob,
)

from .sequence import Sequence, Step
from .types import QUANTIZATION_TYPES

DEFAULT_MAX_CONTEXT = 4096


class LlamaCppOptions(EngineOptions):
    quantization: Literal[tuple(QUANTIZATION_TYPES)] | None = Field(  # type: ignore[valid-type]
        None, description="type a Hugging Face directory is converted to (f32, f16, q8_0, q4_0, "
        "q4_k_m, ...); None = f16. Not allowed with a .gguf file, which has its own types",
    )
    n_ctx: int | None = Field(
        None, ge=16, description="context length (prompt + generated tokens); None = the "
        f"model's trained context, at most {DEFAULT_MAX_CONTEXT}",
    )
    n_threads: int | None = Field(
        None, ge=1, description="generation threads; None = half the logical cores (at least 1), "
        "llama-cpp-python's choice: one thread per physical core on SMT machines",
    )
    n_threads_batch: int | None = Field(
        None, ge=1, description="prompt-processing threads; None = n_threads"
    )
    n_batch: int = Field(512, ge=1, description="prompt tokens evaluated per llama_decode call")
    n_gpu_layers: int = Field(0, ge=-1, description="layers offloaded to a GPU; -1 = all, 0 = CPU")
    kv_cache_type: Literal["f32", "f16", "bf16", "q8_0"] = Field(
        "f16", description="KV-cache type (llama.cpp's default f16; f32 for exact float32 parity)"
    )
    flash_attn: bool = Field(False, description="llama.cpp's flash-attention kernels")
    tokenizer: Literal["auto", "hf", "gguf"] = Field(
        "auto", description="auto = the Hugging Face tokenizer for a directory, llama.cpp's own "
        "for a .gguf file",
    )
    use_mmap: bool = Field(True, description="memory-map the .gguf file")
    parallel: int = Field(
        16, ge=0, description="sequences decoded together in one llama_decode batch by `unillm "
        "serve` and stream_many (llama-server's slots; batching.py); 0 = one request at a time",
    )
    parallel_ctx: int | None = Field(
        None, ge=16, description="KV cells of each of those sequences (prompt + output; "
        "llama-server's --ctx-size / --parallel); None = n_ctx. Memory: parallel x parallel_ctx "
        "cells; a longer request runs one at a time",
    )
    prompt_cache: bool = Field(
        True, description="in that batch, a request whose prompt begins with tokens a free "
        "sequence's KV cells still hold reuses those cells instead of reading the tokens again "
        "(llama-server's cache_prompt); the count is recorded as `prompt_cache_tokens`",
    )
    prompt_cache_mib: int = Field(
        1024, ge=0, description="host memory for the KV cells of prompts no sequence holds any "
        "more, restored when a prompt begins with them (llama-server's --cache-ram); 0 = "
        "only what free sequences still hold",
    )


def _generation_config_eos(model_dir: Path) -> set[int]:
    """Extra end-of-sequence ids from generation_config.json (read without transformers)."""
    import json

    path = model_dir / "generation_config.json"
    if not path.is_file():
        return set()
    eos = json.loads(path.read_text()).get("eos_token_id")
    return {eos} if isinstance(eos, int) else {int(e) for e in eos or ()}


class LlamaCppEngine(Engine):
    """Runs GGUF models (or converted Hugging Face checkpoints) with llama.cpp."""

    Options = LlamaCppOptions
    tunables = {
        "n_threads": Knob("int", 1, max(os.cpu_count() or 1, 1), help="generation threads"),
        "n_batch": Knob("int", 32, 2048, log=True, help="prompt tokens per decode call"),
        "quantization": Knob("choice", choices=("f16", "q8_0", "q4_k_m", "q4_0")),
        "flash_attn": Knob("choice", choices=(False, True)),
    }
    capabilities = Capabilities(
        params=frozenset({
            "max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
            "presence_penalty", "frequency_penalty", "seed", "stop_token_ids", "min_tokens",
            "ignore_eos", "logprobs", "structured", "logit_bias", "allowed_token_ids",
            "bad_words",
        }),
        batch_params="per_request",
        stop_hook=True,
        score=True,  # every position's logits of the prompt batch: scoring.py
    )

    def __init__(self, model: str, options: LlamaCppOptions):
        super().__init__(model, options)
        import gguf
        import llama_cpp

        self._lib = llama_cpp
        source = Path(model)
        self.hf_dir: Path | None = source if source.is_dir() else None
        self.gguf_path = self._gguf_file(source, options)
        trained = self._trained_context(self.gguf_path)
        if options.n_ctx is not None:
            n_ctx = options.n_ctx
        else:
            n_ctx = min(trained or DEFAULT_MAX_CONTEXT, DEFAULT_MAX_CONTEXT)
        n_threads = options.n_threads or max((os.cpu_count() or 1) // 2, 1)
        cache_type = int(gguf.GGMLQuantizationType[options.kv_cache_type.upper()])
        self.load_args: dict[str, Any] = dict(
            n_ctx=n_ctx, n_batch=min(options.n_batch, n_ctx), n_ubatch=min(options.n_batch, n_ctx),
            n_threads=n_threads, n_threads_batch=options.n_threads_batch or n_threads,
            n_gpu_layers=options.n_gpu_layers, type_k=cache_type, type_v=cache_type,
            flash_attn=options.flash_attn, use_mmap=options.use_mmap, logits_all=False,
            embedding=False, verbose=False,
        )
        self.llm = llama_cpp.Llama(str(self.gguf_path), **self.load_args)
        # Free the model before interpreter shutdown: llama-cpp-python's own __del__ fails
        # noisily once its module globals are gone.
        self._finalizer = weakref.finalize(self, self.llm.close)
        self.n_vocab = self.llm.n_vocab()
        self.context_length = self.llm.n_ctx()
        self.tokenizer = self._tokenizer(options)
        self.eos_ids = frozenset(self.tokenizer.eos_token_ids)
        self._running = None  # the running batch, created on first use

    # -- loading ----------------------------------------------------------------------------
    def _gguf_file(self, source: Path, options: LlamaCppOptions) -> Path:
        if source.is_dir():
            from .convert import cached_gguf

            return cached_gguf(source, options.quantization or "f16",
                               threads=options.n_threads)
        if not source.is_file():
            raise InvalidParameterError("model", str(source), "a .gguf file or a Hugging Face "
                                        "model directory", owner="llamacpp")
        if options.quantization is not None:
            raise InvalidParameterError(
                "quantization", options.quantization, "None for a .gguf file (its tensors keep "
                "the types they were saved with); quantize with llama.cpp's llama-quantize, or "
                "load the Hugging Face directory", owner="llamacpp engine option",
            )
        return source

    @staticmethod
    def _trained_context(path: Path) -> int | None:
        import gguf

        reader = gguf.GGUFReader(path)
        arch = reader.fields.get("general.architecture")
        if arch is None:
            return None
        field = reader.fields.get(f"{arch.contents()}.context_length")
        return int(field.contents()) if field is not None else None

    def _tokenizer(self, options: LlamaCppOptions):
        kind = options.tokenizer
        if kind == "auto":
            kind = "hf" if self.hf_dir is not None else "gguf"
        if kind == "gguf":
            from .tokenizer import GGUFTokenizer

            return GGUFTokenizer(self.llm)
        if self.hf_dir is None:
            raise InvalidParameterError(
                "tokenizer", "hf", "'gguf' or 'auto' for a .gguf file (a Hugging Face tokenizer "
                "needs the model's directory)", owner="llamacpp engine option",
            )
        from unillm.tokenizer import HFTokenizer

        return HFTokenizer.from_pretrained(str(self.hf_dir),
                                           extra_eos_ids=_generation_config_eos(self.hf_dir))

    def info(self) -> dict[str, Any]:
        lib, model = self._lib, self.llm._model.model
        return {
            "device": "cpu" if self.options.n_gpu_layers == 0 else
            f"gpu ({self.options.n_gpu_layers} layers offloaded)",
            "gguf": str(self.gguf_path),
            "file_type": self._file_type(),
            "weight_bytes": int(lib.llama_model_size(model)),
            "parameters": int(lib.llama_model_n_params(model)),
            "llama_args": {k: v for k, v in self.load_args.items() if k != "verbose"},
            "tokenizer": type(self.tokenizer).__name__,
        }

    def _file_type(self) -> str | None:
        import gguf

        value = self.llm.metadata.get("general.file_type")
        try:
            return gguf.LlamaFileType(int(value)).name.removeprefix("MOSTLY_").lower()
        except (TypeError, ValueError):
            return value

    # -- one sequence -----------------------------------------------------------------------
    def _check_prompt(self, ids: Seq[int]) -> None:
        bad = [t for t in ids if not 0 <= t < self.n_vocab]
        if bad:
            raise InvalidPromptError(
                f"prompt token id {bad[0]} is outside the vocabulary (0..{self.n_vocab - 1})"
            )

    def _steps(self, request: EngineRequest, received: dict[str, Any]) -> Iterator[Step]:
        """Generate one sequence, yielding each token as soon as it is sampled; `received`
        gets the record of what the sampler chain was given, before the first token."""
        llm = self.llm
        with Sequence(self, request) as seq:
            received.update(seq.received)
            llm.reset()
            llm.eval(seq.prompt)
            while True:
                step = seq.step(llm._ctx.ctx)
                yield step
                if step.finish is not None:
                    return
                llm.eval([step.token])

    # -- the engine contract ----------------------------------------------------------------
    def generate(self, requests: Seq[EngineRequest]) -> list[EngineResult]:
        """One request after another; a request that fails does not cost the others theirs
        (`PartialBatchFailure`), unless it was the only one (its own error is raised)."""
        results: list[EngineResult | None] = []
        errors: dict[int, BaseException] = {}
        for index, request in enumerate(requests):
            try:
                results.append(self._generate_one(request))
            except Exception as exc:  # noqa: BLE001 - reported per request below
                results.append(None)
                errors[index] = exc
        if len(errors) == len(requests) and errors:
            raise next(iter(errors.values()))
        if errors:
            raise PartialBatchFailure(results, errors)
        return results  # type: ignore[return-value]

    def _generate_one(self, request: EngineRequest) -> EngineResult:
        received: dict[str, Any] = {}
        tokens: list[int] = []
        times: list[float] = []
        logprobs: list[TokenLogprob] = []
        finish, reason = "length", None
        step = None
        with contextlib.closing(self._steps(request, received)) as steps:  # frees the chain on a break
            for step in steps:
                tokens.append(step.token)
                times.append(step.time)
                if step.logprob is not None:
                    logprobs.append(step.logprob)
                if step.finish is not None:
                    finish, reason = step.finish, step.stop_reason
                    break
                if request.should_stop(0, (step.token,)):
                    break  # an emulated stop string: unillm's finalize names it
        return EngineResult([EngineSequence(
            token_ids=tokens, finish_reason=finish, stop_reason=reason, token_times=times,
            logprobs=logprobs if request.params.logprobs is not None else None,
            mask_s=step.mask_s if step is not None else None,
        )], received=received, compile_s=step.compile_s if step is not None else None)

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        from .scoring import score

        return score(self, requests)

    def stream(self, request: EngineRequest) -> Iterator[TokenEvent]:
        # Closing this generator closes `steps` at once: generation stops, the chain is freed.
        received: dict[str, Any] = {}
        with contextlib.closing(self._steps(request, received)) as steps:
            first = True
            for step in steps:
                yield TokenEvent(
                    0, (step.token,), finish_reason=step.finish, stop_reason=step.stop_reason,
                    logprobs=[step.logprob] if step.logprob is not None else None,
                    result=EngineResult(received=received) if first else None,
                )
                first = False

    def running_batch(self):
        """Several sequences in one `llama_decode` batch (batching.py), or None with
        ``parallel=0``."""
        if self._running is None and self.options.parallel > 0:
            from .batching import LlamaRunningBatch

            self._running = LlamaRunningBatch(
                self, parallel=self.options.parallel,
                slot_ctx=min(self.options.parallel_ctx or self.context_length,
                             self.context_length),
                prompt_cache=self.options.prompt_cache,
                saved_bytes=self.options.prompt_cache_mib * 2**20)
        return self._running

    def close(self) -> None:
        running, self._running = getattr(self, "_running", None), None
        if running is not None:
            running.close()
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()  # llm.close(), once
