"""Hugging Face transformers: `model.generate` with unillm's semantics.

Every sampling field is passed explicitly on every call, and the checkpoint's own
`generation_config.json` sampling values are set aside at load, so nothing leaks in (transformers
fills any field left None from that file, and its global default is top_k 50). A list of
prompts is one left-padded `generate` call, streamed or not (`stream_batch`, which lets a server
batch its streaming clients). Streaming and per-token timing in batch calls use a streamer that
receives each step's tokens; emulated stop strings stop rows through a stopping criterion.
Quantizing while loading (bitsandbytes, GPTQ, torchao) is the `quantization` option;
quantization.py turns it into from_pretrained's arguments.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
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
    stream_as_batch_of_one,
)
from ..errors import EngineError, InvalidParameterError
from ..hookspecs import hookimpl
from ..results import TokenLogprob
from . import quantization as quant
from .hf_continuous import alone
from .hf_options import TransformersOptions
from .hf_steps import Timestamps, openai_penalties, seeded, token_logprobs


class TransformersEngine(Engine):
    """Runs any `AutoModelForCausalLM` checkpoint with transformers."""

    Options = TransformersOptions
    tunables = {
        "max_batch_size": Knob("int", 1, 64, log=True, help="prompts per generate call"),
        "attn_implementation": Knob("choice", choices=("eager", "sdpa")),
        "dtype": Knob("choice", choices=("float32", "bfloat16")),
        "threads": Knob("int", 1, max(os.cpu_count() or 1, 1), help="torch intra-op threads"),
    }
    capabilities = Capabilities(  # scoring and prompt_logprobs: hf_scoring.py
        params=ALL_FIELDS - {"stop"}, batch_params="uniform", stop_hook=True, score=True,
    )

    def __init__(self, model: str, options: TransformersOptions):
        super().__init__(model, options)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        from ..tokenizer import HFTokenizer

        self.torch = torch
        if options.threads:
            torch.set_num_threads(options.threads)
        device = options.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)

        hf_tok = AutoTokenizer.from_pretrained(
            model, trust_remote_code=options.trust_remote_code, revision=options.revision
        )
        self._hf_tokenizer = hf_tok
        self.quantization = self._resolve_quantization()
        self.model_obj = AutoModelForCausalLM.from_pretrained(model, **self._model_kwargs())
        if self._needs_move():
            self.model_obj = self.model_obj.to(self.device)
        self.model_obj.eval()
        if self.quantization is not None:
            quant.after_load(self.model_obj)

        # Keep the checkpoint's special tokens, set its sampling defaults aside (see module doc).
        original = self.model_obj.generation_config
        self._checkpoint_generation_config = original
        self.checkpoint_sampling_defaults = {
            k: v for k, v in original.to_diff_dict().items()
            if k in ("do_sample", "temperature", "top_k", "top_p", "min_p", "typical_p",
                     "repetition_penalty", "max_length", "max_new_tokens", "num_beams")
        }
        eos = original.eos_token_id
        eos_ids = {eos} if isinstance(eos, int) else set(eos or ())
        self.tokenizer = HFTokenizer(hf_tok, extra_eos_ids=eos_ids)
        self.pad_token_id = self.tokenizer.pad_token_id
        if self.pad_token_id is None:
            raise EngineError(self.name, "the tokenizer has neither a pad nor an eos token")
        self.model_obj.generation_config = GenerationConfig(
            bos_token_id=original.bos_token_id, pad_token_id=self.pad_token_id,
            decoder_start_token_id=original.decoder_start_token_id,
        )
        self._running = None  # the continuous batch, created on first use
        config = self.model_obj.config.get_text_config()
        self.context_length = (
            getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        )

    # -- loading ----------------------------------------------------------------------------
    @property
    def methods(self) -> tuple[str, ...] | None:
        """Quantization methods this engine name accepts (None: any); see `ALIASES`."""
        return ALIASES[self.name][1] if self.name in ALIASES else None

    def _resolve_quantization(self) -> dict[str, Any] | None:
        """What quantization this load applies: ``{"method", "source": "load"|"checkpoint",
        ...}``, or None for a full-precision model. A checkpoint that is already quantized (its
        config.json has a quantization_config) is loaded as it is."""
        from transformers import AutoConfig

        o = self.options
        requested = o.quantization
        config = AutoConfig.from_pretrained(
            self.model, trust_remote_code=o.trust_remote_code, revision=o.revision
        )
        found = quant.checkpoint_quantization(config)
        explicit = "quantization" in o.model_fields_set
        if found is not None:
            if requested is not None:
                quant.check_against_checkpoint(requested, explicit, found)
            self._check_method(found["method"], "the checkpoint's quantization")
            quant.prepare_environment(found["method"])
            return {**found, "source": "checkpoint"}
        if requested is None:
            if self.methods is not None:
                self._check_method("none", "quantization")
            return None
        self._check_method(requested.method, "quantization")
        quant.require_library(requested, self.name or "transformers")
        quant.prepare_environment(requested.method)
        if requested.method == "gptq" and self.device.type == "cpu":
            group = requested.group_size or quant.GPTQ_DEFAULT_GROUP_SIZE
            quant.check_gptq_group_size(config, group)
        hf_config, sent = quant.hf_config(requested, tokenizer=self._hf_tokenizer,
                                          model_dtype=o.dtype)
        self._hf_quantization_config = hf_config
        return {"method": requested.method, "source": "load", "bits": requested.effective_bits,
                "library": requested.info.library, "sent": sent}

    def _check_method(self, method: str, what: str) -> None:
        if self.methods is not None and method not in self.methods:
            raise InvalidParameterError(
                "quantization", method, f"engine {self.name!r} runs {', '.join(self.methods)}; "
                f"use engine 'transformers' for {what} {method!r}",
                owner=f"{self.name} engine option",
            )

    def _model_kwargs(self) -> dict[str, Any]:
        o = self.options
        dtype: Any = o.dtype
        if dtype != "auto":
            dtype = getattr(self.torch, dtype)
        kwargs: dict[str, Any] = {
            "dtype": dtype, "trust_remote_code": o.trust_remote_code, "revision": o.revision,
        }
        if o.attn_implementation:
            kwargs["attn_implementation"] = o.attn_implementation
        if self.quantization is not None:
            # Quantized weights are placed while loading; they cannot be moved afterwards.
            kwargs["device_map"] = {"": str(self.device)}
            if self.quantization["source"] == "load":
                kwargs["quantization_config"] = self._hf_quantization_config
        return kwargs

    def _needs_move(self) -> bool:
        return self.quantization is None

    def info(self) -> dict[str, Any]:
        m = self.model_obj
        weight_bytes = quant.weight_bytes(m)
        parameters = quant.logical_parameters(m)
        out: dict[str, Any] = {
            "device": str(self.device),
            "dtype": str(m.dtype).replace("torch.", ""),
            "weight_bytes": weight_bytes,
            "parameters": parameters,
            "bits_per_parameter": round(8 * weight_bytes / max(parameters, 1), 2),
            "checkpoint_sampling_defaults_ignored": self.checkpoint_sampling_defaults,
            "quantization": None,
        }
        if self.quantization is not None:
            kinds = quant.layer_kinds(m)
            out["quantization"] = {
                **self.quantization,
                "quantized_layers": sum(quant.is_quantized_kind(k) for k in kinds.values()),
                "full_precision_layers": sorted(
                    n for n, k in kinds.items() if not quant.is_quantized_kind(k)
                ),
            }
        return out

    def save(self, path: str) -> None:
        """`save_pretrained` of the model as loaded (quantized weights included) and of its
        tokenizer, with the checkpoint's own generation_config.json (the engine's neutral one
        is only for generating)."""
        method = self.quantization["method"] if self.quantization else None
        quant.check_serializable(self.model_obj, method, self.name or "transformers")
        quant.prepare_for_save(self.model_obj)
        neutral = self.model_obj.generation_config
        self.model_obj.generation_config = self._checkpoint_generation_config
        try:
            self.model_obj.save_pretrained(path)
        finally:
            self.model_obj.generation_config = neutral
        self._hf_tokenizer.save_pretrained(path)

    # -- translating parameters -------------------------------------------------------------
    def _generation_kwargs(self, p, prompt_len: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """(kwargs for generate, the record of what was passed)."""
        from transformers import GenerationConfig, LogitsProcessorList

        terminators = set(p.stop_token_ids)
        if not p.ignore_eos:
            terminators |= self.tokenizer.eos_token_ids
        sampling = not p.is_greedy
        config = dict(
            max_new_tokens=p.max_tokens,
            min_new_tokens=p.min_tokens or None,
            do_sample=sampling,
            temperature=p.temperature if sampling else 1.0,
            top_k=(p.top_k or 0) if sampling else None,  # 0 = off; None is unused when greedy
            top_p=p.top_p if sampling else 1.0,
            min_p=(p.min_p or None) if sampling else None,
            repetition_penalty=p.repetition_penalty,
            num_return_sequences=p.n,
            num_beams=1,
            eos_token_id=sorted(terminators) or None,
            pad_token_id=self.pad_token_id,
            output_logits=p.logprobs is not None,
            return_dict_in_generate=True,
        )
        processors = LogitsProcessorList()
        if p.presence_penalty or p.frequency_penalty:
            processors.append(openai_penalties(p.presence_penalty, p.frequency_penalty, prompt_len))
        record = {k: v for k, v in config.items() if k not in ("return_dict_in_generate",)}
        if processors:
            record["logits_processor"] = {
                "presence_penalty": p.presence_penalty, "frequency_penalty": p.frequency_penalty
            }
        record["seed"] = p.seed
        kwargs = {"generation_config": GenerationConfig(**config), "logits_processor": processors}
        return kwargs, record

    def _constrain(self, kwargs: dict[str, Any], record: dict[str, Any], p, rows: int,
                   prompt_len: int):
        """Token rules and a `structured` constraint as logits processors (hf_constraints.py);
        returns one grammar matcher per row, or None without a constraint."""
        from .hf_constraints import constrain

        return constrain(self, kwargs, record, p, rows, prompt_len)

    def _inputs(self, requests: Sequence[EngineRequest]):
        torch = self.torch
        width = max(len(r.prompt_token_ids or ()) for r in requests)
        ids = torch.full((len(requests), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(requests), width), dtype=torch.long)
        for row, r in enumerate(requests):
            prompt = r.prompt_token_ids or []
            ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt):] = 1
        return ids.to(self.device), mask.to(self.device), width

    # -- batch ------------------------------------------------------------------------------
    def generate(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        size = self.options.max_batch_size or len(requests)
        out: list[EngineResult] = []
        with alone(self._running):  # a running batch pauses meanwhile (hf_continuous.py)
            for i in range(0, len(requests), size):
                out.extend(self._generate_batch(requests[i:i + size]))
        return out

    def _generate_batch(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        from transformers import StoppingCriteria, StoppingCriteriaList

        p = requests[0].params
        n = p.n
        ids, mask, width = self._inputs(requests)
        kwargs, record = self._generation_kwargs(p, width)
        rows = len(requests) * n
        matchers = self._constrain(kwargs, record, p, rows, width)

        from .hf_scoring import prompt_logprobs

        prompts = prompt_logprobs(self, requests)
        hook_len: dict[int, int] = {}
        criteria = StoppingCriteriaList()
        if any(r.trackers for r in requests):
            terminators = set(kwargs["generation_config"].eos_token_id or ())
            torch = self.torch

            class _EmulatedStops(StoppingCriteria):
                def __call__(self, input_ids, scores, **_):
                    new = input_ids[:, width:]
                    done = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
                    last = new[:, -1].tolist()
                    for row in range(rows):
                        if row in hook_len:
                            done[row] = True
                            continue
                        req = requests[row // n]
                        if req.should_stop(row % n, (last[row],)):
                            hook_len[row] = new.shape[1]
                            done[row] = True
                        elif last[row] in terminators and new.shape[1] > p.min_tokens:
                            hook_len[row] = new.shape[1]  # finished by eos: stop feeding it
                    return done

            criteria.append(_EmulatedStops())

        stamps = Timestamps()
        with self.torch.inference_mode(), seeded(self.torch, self.device, p.seed):
            result = self.model_obj.generate(
                input_ids=ids, attention_mask=mask, streamer=stamps,
                stopping_criteria=criteria, **kwargs,
            )
        new_tokens = result.sequences[:, width:].tolist()
        logits = result.logits if p.logprobs is not None else None
        terminators = set(kwargs["generation_config"].eos_token_id or ())
        out: list[EngineResult] = []
        for row, tokens in enumerate(new_tokens):
            length, finish, reason = self._row_end(tokens, terminators, p, hook_len.get(row))
            seq = EngineSequence(
                token_ids=tokens[:length], finish_reason=finish, stop_reason=reason,
                token_times=stamps.times[:length],
                logprobs=self._logprobs(logits, row, tokens[:length], p.logprobs)
                if logits is not None else None,
                mask_s=matchers[row].mask_s if matchers else None,
            )
            if row % n == 0:
                out.append(EngineResult(received=dict(record), compile_s=matchers[0].compiled
                                        .compile_s if matchers else None,
                                        prompt_logprobs=prompts[row // n]))
            out[-1].samples.append(seq)
        return out

    def _row_end(self, tokens: list[int], terminators: set[int], p, hook_stop: int | None):
        """(length, finish_reason, stop_reason) of one generated row."""
        limit = len(tokens) if hook_stop is None else min(hook_stop, len(tokens))
        for i in range(max(p.min_tokens, 0), limit):
            if tokens[i] in terminators:
                reason = tokens[i] if tokens[i] in p.stop_token_ids else None
                return i + 1, "stop", reason
        if hook_stop is not None:
            return limit, "length", None  # the core's finalize names the emulated stop
        return min(len(tokens), p.max_tokens), "length", None

    def _logprobs(self, logits, row: int, tokens: list[int], top: int) -> list[TokenLogprob]:
        return token_logprobs(self.torch, logits, row, tokens, top)

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        from .hf_scoring import score

        return score(self, requests)

    # -- streaming --------------------------------------------------------------------------
    def stream(self, request: EngineRequest) -> Iterator[TokenEvent]:
        return stream_as_batch_of_one(self, request)

    def stream_batch(self, requests: Sequence[EngineRequest]) -> Iterator[tuple[int, TokenEvent]]:
        """One left-padded `generate` call per `max_batch_size` prompts, its tokens handed
        over step by step; an aborted request's rows are stopped by a stopping criterion."""
        size = self.options.max_batch_size or len(requests) or 1
        with alone(self._running):
            for first in range(0, len(requests), size):
                part = requests[first:first + size]
                if all(r.aborted for r in part):
                    continue
                events = self._stream_batch(part)
                try:
                    for index, event in events:
                        yield first + index, event
                finally:
                    events.close()

    def _stream_batch(self, requests: Sequence[EngineRequest]) -> Iterator[tuple[int, TokenEvent]]:
        from .hf_steps import stream_steps

        return stream_steps(self, requests)

    def running_batch(self):
        """transformers' continuous-batching manager (hf_continuous.py), or None."""
        if self._running is None:
            from .hf_continuous import running_batch_for

            self._running = running_batch_for(self)
        return self._running

    def close(self) -> None:
        if getattr(self, "_running", None) is not None:
            self._running.close()
            self._running = None
        model = getattr(self, "model_obj", None)
        if model is not None:
            del self.model_obj
            if self.device.type == "cuda":
                self.torch.cuda.empty_cache()


# -- quantized aliases ---------------------------------------------------------------------
# `unillm.load("bnb", model)` is `unillm.load("transformers", model, quantization="nf4")`: the
# same engine class, registered again with `defaults=` and accepting the methods of one library
# only. The canonical spelling is the transformers engine with `quantization=`; these names are
# shortcuts whose availability (`unillm engines`) also tells whether the library is installed.
ALIASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "bnb": ("nf4", ("nf4", "fp4", "int8")),
    "gptq": ("gptq", ("gptq",)),
    "torchao": ("torchao-int8", ("torchao-int8",)),
}
"""Engine name -> (its default quantization method, the methods it accepts)."""


@hookimpl
def unillm_register_engines(register) -> None:
    register(
        "transformers", TransformersEngine, requires=("torch", "transformers"),
        extra="transformers", description="Hugging Face transformers (model.generate)",
    )
    alias = {name: {"quantization": default} for name, (default, _) in ALIASES.items()}
    register(
        "bnb", TransformersEngine, requires=("torch", "transformers", "bitsandbytes"),
        extra="bnb", aliases=("bitsandbytes",), defaults=alias["bnb"],
        description="transformers + bitsandbytes: nf4 (default), fp4, int8",
    )
    register(
        "gptq", TransformersEngine, requires=("torch", "transformers", "gptqmodel", "optimum"),
        extra="gptq", defaults=alias["gptq"],
        description="transformers + GPTQ (gptqmodel): 4-bit, calibrated on load",
    )
    register(
        "torchao", TransformersEngine, requires=("torch", "transformers", "torchao"),
        extra="torchao", defaults=alias["torchao"],
        description="transformers + torchao: int8 weight-only",
    )
