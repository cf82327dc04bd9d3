"""CTranslate2: `Generator.generate_batch` with unillm's semantics.

CTranslate2's defaults differ from unillm's almost everywhere (greedy unless `sampling_topk` is
set, 512 tokens, eos dropped from the result, the prompt echoed), so every option is sent on
every call. Four behaviours need more than a renamed argument:

- Seeds. CTranslate2 has no per-call seed: each worker thread owns a random generator that is
  seeded once, from the global `set_random_seed` value, the first time that thread samples.
  A seeded sampling call therefore runs on a freshly created `ctranslate2.Generator` (its
  worker has never sampled) with the global seed set to the call's seed. The previous
  generator is released first, so the weights are never held twice; the cost is one model
  load per seeded call (milliseconds for small models on CPU, seconds for large ones: see
  docs/engines/ctranslate2.md). Unseeded and greedy calls never reload.
- Repetition penalty. CTranslate2 penalises only the tokens it decoded itself. unillm's penalty
  covers the prompt too, so a penalised call feeds the prompt through the decoding loop
  (`include_prompt_in_result=True`: the prompt becomes a forced prefix that the penalty sees),
  one prompt length per `generate_batch` call, since the limits then count the prefix.
- Prompts of one token. In a batch whose shortest prompt has a single token, CTranslate2 counts
  the other rows' prompt tails as output (limits, callbacks, results). Such rows are run in a
  separate call.
- Stops and timing. When a call needs per-token work (emulated stop strings, streaming, or
  the `batch_token_times` option), CTranslate2's per-token `callback` records each token and
  its time and asks the core's stop-string tracker whether the row must end, which stops that
  row inside CTranslate2. A Python call per token and row costs about as much as a decoding
  step of a small model, so plain batch calls run without it (their timing is end-to-end).

`n` is the prompt repeated n times in the batch (rather than `num_hypotheses`, which sorts the
samples by score), so sample i is always row i.
"""

from __future__ import annotations

import atexit
import logging
import os
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import Field

from ...engine import (
    Capabilities,
    Engine,
    EngineOptions,
    EngineRequest,
    EngineResult,
    EngineSequence,
    Knob,
    ScoreRequest,
    ScoreResult,
    TokenEvent,
    stream_as_batch_of_one,
)
from ...errors import EngineError, InvalidParameterError
from ...params import SamplingParams
from ...timing import now
from .choice import NOTES
from .convert import (
    ensure_converted,
    is_ctranslate2_model,
    read_json,
    read_metadata,
    read_vocabulary,
)

log = logging.getLogger("unillm.ctranslate2")

COMPUTE_TYPES = ("default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16",
                 "int16", "float16", "bfloat16", "float32")

RANDOM_SEED = 2**32 - 1
"""CTranslate2's "no seed" value: worker threads then seed from std::random_device."""


class CTranslate2Options(EngineOptions):
    compute_type: Literal[
        "default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
        "float16", "bfloat16", "float32",
    ] = Field("default", description="weights/computation type; default = as converted (a Hugging "
              "Face model is converted in this type), auto = the fastest the device supports")
    device: str = Field("auto", description="auto (CUDA if available, else CPU), cpu, cuda, cuda:1")
    intra_threads: int = Field(0, ge=0, description="threads per generation; 0 = CTranslate2's "
                               "default (all cores, at most 4)")
    inter_threads: int = Field(1, ge=1, description="batches run in parallel (each its own worker)")
    max_batch_size: int = Field(0, ge=0, description="split larger batches into chunks of this "
                                "many prompts (sorted by length); 0 = one batch")
    tokenizer: str | None = Field(None, description="Hugging Face tokenizer (path or hub id) for a "
                                  "CTranslate2 directory that has none of its own")
    revision: str | None = Field(None, description="hub revision of a model to convert")
    trust_remote_code: bool = Field(False, description="run code shipped with a model to convert")
    batch_token_times: bool = Field(False, description="time each token in non-streamed calls "
                                    "(TTFT/ITL/TPOT) through a Python callback per token and row; "
                                    "streamed calls are always timed per token")


SUPPORTED = frozenset({
    "max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "stop_token_ids",
    "seed", "n", "min_tokens", "ignore_eos", "structured",
})
"""Honoured natively. Not here, so refused by the core: min_p, presence/frequency penalties
(CTranslate2 has none) and logprobs (it returns full-vocabulary logits only after its logits
processors ran, not the model's own distribution). stop strings are emulated by the core, with
this engine's per-token hook. `structured` is a `choice` only, scored exactly (choice.py)."""



def _parse_device(device: str) -> tuple[str, int]:
    name, _, index = device.partition(":")
    if name not in ("auto", "cpu", "cuda") or (index and not index.isdigit()):
        raise InvalidParameterError("device", device, "auto, cpu, cuda or cuda:N",
                                    owner="ctranslate2 engine option")
    return name, int(index or 0)


def _ct2_seed(seed: int) -> int:
    """CTranslate2 reads the largest 32-bit seed as "unseeded", so that one seed is sent as
    the one below it (documented)."""
    return seed if seed != RANDOM_SEED else RANDOM_SEED - 1


_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _release_at_exit() -> None:
    """Release every generator before the interpreter shuts down: CTranslate2 4.8 can abort the
    process ("terminate called without an active exception") when a generator that ran a
    Python callback is destroyed during interpreter finalization."""
    for engine in list(_LIVE):
        engine.close()


class _Rows:
    """The rows of one `generate_batch` call: prompt tokens and what the callback collected."""

    __slots__ = ("requests", "samples", "tokens", "ids", "times", "hooked", "prefix")

    def __init__(self, requests: list[EngineRequest], samples: list[int], tokens: list[list[str]],
                 prefix: int):
        self.requests = requests  # the request of each row
        self.samples = samples  # the sample index of each row within its request
        self.tokens = tokens
        self.ids: list[list[int]] = [[] for _ in tokens]
        self.times: list[list[float]] = [[] for _ in tokens]
        self.hooked = [False] * len(tokens)  # stopped by the core's stop hook
        self.prefix = prefix  # forced prompt steps CTranslate2 reports before the output


class CTranslate2Engine(Engine):
    """Runs a CTranslate2 model directory, or a Hugging Face model converted on first use."""

    Options = CTranslate2Options
    tunables = {
        "compute_type": Knob("choice", choices=("int8", "float32", "auto")),
        "intra_threads": Knob("int", 1, os.cpu_count() or 1, help="threads per generation"),
        "max_batch_size": Knob("int", 0, 64, help="prompts per CTranslate2 batch (0 = all)"),
    }
    capabilities = Capabilities(
        params=SUPPORTED, batch_params="uniform", stop_hook=True,
        structured_kinds=frozenset({"choice"}),
        not_with_structured=frozenset({"repetition_penalty"}), notes=NOTES,
        score=True)  # score_batch / forward_batch: scoring.py

    def __init__(self, model: str, options: CTranslate2Options):
        super().__init__(model, options)
        import ctranslate2

        self.ct2 = ctranslate2
        self.device, self.device_index = _parse_device(options.device)
        self._check_compute_type()
        if is_ctranslate2_model(model):
            self.path = model
        else:
            self.path = str(ensure_converted(model, options.compute_type, revision=options.revision,
                                             trust_remote_code=options.trust_remote_code))
        self.metadata = read_metadata(self.path)
        self.vocabulary = read_vocabulary(self.path)
        self.tokenizer = self._load_tokenizer()
        self.context_length = self.metadata.get("context_length")
        self.seeded_reloads = 0
        self._generator: Any = None
        self._main()  # load now: a broken model fails at load, not at the first call
        _LIVE.add(self)

    # -- loading ----------------------------------------------------------------------------
    def _check_compute_type(self) -> None:
        wanted = self.options.compute_type
        if wanted in ("default", "auto") or self.device == "auto":
            return
        try:
            supported = set(self.ct2.get_supported_compute_types(self.device, self.device_index))
        except (RuntimeError, ValueError) as exc:
            raise EngineError(self.name, f"device {self.options.device!r} is not usable: {exc}") from exc
        if wanted not in supported:
            allowed = ", ".join(["default", "auto", *sorted(supported)])
            raise InvalidParameterError(
                "compute_type", wanted, f"on {self.options.device} this build supports: {allowed}",
                owner="ctranslate2 engine option",
            )

    def _load_tokenizer(self):
        from transformers import AutoTokenizer

        from ...tokenizer import HFTokenizer

        source = self.options.tokenizer or self.path
        try:
            hf = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as exc:
            raise EngineError(
                self.name, f"no tokenizer found in {source!r} ({exc}); pass "
                "tokenizer='<Hugging Face tokenizer path or hub id>'",
            ) from exc
        eos = set(self.metadata.get("eos_token_ids") or ())
        ct2_eos = read_json(os.path.join(self.path, "config.json")).get("eos_token")
        if ct2_eos in self.vocabulary:  # CTranslate2's own default end token
            eos.add(self.vocabulary.index(ct2_eos))
        return HFTokenizer(hf, extra_eos_ids=eos)

    def _new_generator(self):
        o = self.options
        return self.ct2.Generator(
            self.path, device=self.device, device_index=self.device_index,
            compute_type=o.compute_type, intra_threads=o.intra_threads,
            inter_threads=o.inter_threads,
        )

    def _main(self):
        if self._generator is None:
            self._generator = self._new_generator()
        return self._generator

    @contextmanager
    def _generator_for(self, p: SamplingParams) -> Iterator[Any]:
        """The generator to run `p` on: a fresh one, seeded, for a seeded sampling call (see the
        module docstring), the current one otherwise."""
        if p.seed is None or p.is_greedy:
            yield self._main()
            return
        self._generator = None  # release the old weights before loading the new copy
        self.ct2.set_random_seed(_ct2_seed(p.seed))
        try:
            yield self._main()
        finally:
            self.ct2.set_random_seed(RANDOM_SEED)
            self.seeded_reloads += 1

    def info(self) -> dict[str, Any]:
        gen = self._generator
        return {
            "device": gen.device if gen is not None else None,
            "compute_type": gen.compute_type if gen is not None else None,
            "model_dir": self.path,
            "converted_from": self.metadata.get("source"),
            "conversion": self.metadata or None,
            "vocabulary_size": len(self.vocabulary),
            "seeded_reloads": self.seeded_reloads,
        }

    # -- translating parameters -------------------------------------------------------------
    def _end_ids(self, p: SamplingParams) -> set[int]:
        end = set(p.stop_token_ids)
        if not p.ignore_eos:
            end |= self.tokenizer.eos_token_ids
        return end

    def _options(self, p: SamplingParams) -> dict[str, Any]:
        """Every generate_batch option unillm's semantics depend on, explicitly."""
        greedy = p.is_greedy
        top_k = 1 if greedy else (p.top_k or 0)
        if top_k >= len(self.vocabulary):
            top_k = 0  # keeps everything, as unillm's top_k does; CTranslate2 rejects k > vocab
        return {
            "max_length": p.max_tokens,
            "min_length": p.min_tokens,
            "sampling_topk": top_k,
            "sampling_topp": 1.0 if greedy else p.top_p,
            "sampling_temperature": 1.0 if greedy else p.temperature,
            "repetition_penalty": p.repetition_penalty,
            "end_token": sorted(self._end_ids(p)),
            "return_end_token": True,
            "include_prompt_in_result": False,
            "beam_size": 1,
            "num_hypotheses": 1,
            "max_batch_size": self.options.max_batch_size,
            "return_scores": False,
        }

    def _token_strings(self, request: EngineRequest) -> list[str]:
        ids = request.prompt_token_ids or []
        vocab = self.vocabulary
        if ids and (min(ids) < 0 or max(ids) >= len(vocab)):
            bad = next(i for i in ids if not 0 <= i < len(vocab))
            raise InvalidParameterError(
                "prompt_token_ids", bad, f"token ids in 0..{len(vocab) - 1} (this model's vocabulary)",
                owner="prompt",
            )
        return [vocab[i] for i in ids]

    def _plan(self, requests: Sequence[EngineRequest]) -> tuple[list[_Rows], dict[str, Any]]:
        """Split the rows into the generate_batch calls that keep unillm's semantics (see the
        module docstring) and the options each call gets."""
        p = requests[0].params
        penalised = p.repetition_penalty != 1.0
        rows = []
        for r in requests:
            tokens = self._token_strings(r)
            rows.extend((r, k, tokens) for k in range(p.n))
        if penalised:
            keys = [len(t) for _, _, t in rows]
        else:
            lengths = {len(t) for _, _, t in rows}
            keys = [len(t) == 1 for _, _, t in rows] if 1 in lengths and len(lengths) > 1 else [0] * len(rows)
        groups: dict[Any, list] = {}
        for key, row in zip(keys, rows):
            groups.setdefault(key, []).append(row)
        calls = []
        for members in groups.values():
            prefix = len(members[0][2]) - 1 if penalised else 0
            calls.append(_Rows([m[0] for m in members], [m[1] for m in members],
                               [m[2] for m in members], prefix))
        return calls, self._options(p)

    @staticmethod
    def _call_options(options: dict[str, Any], rows: _Rows) -> dict[str, Any]:
        if not rows.prefix and options["repetition_penalty"] == 1.0:
            return options
        # The prompt is fed as a forced prefix (see the module docstring): limits count it.
        return {**options, "include_prompt_in_result": True,
                "max_length": rows.prefix + options["max_length"],
                "min_length": rows.prefix + options["min_length"]}

    # -- running ----------------------------------------------------------------------------
    def _call_kwargs(self, rows: _Rows, options: dict[str, Any],
                     p: SamplingParams) -> tuple[dict[str, Any], dict[str, Any]]:
        """(this call's generate_batch options, the record of them each request reports)."""
        kwargs = self._call_options(options, rows)
        seeded = p.seed is not None and not p.is_greedy
        record = {**kwargs, "prompt_copies": p.n,
                  "set_random_seed": _ct2_seed(p.seed) if seeded else None}  # type: ignore[arg-type]
        return kwargs, record

    def _run(self, generator, rows: _Rows, kwargs: dict[str, Any]) -> None:
        hook = any(r.trackers for r in rows.requests)
        if not (hook or self.options.batch_token_times):
            # No per-token work: no callback, whose cost (a Python call per token and row)
            # is of the order of a decoding step for a small model.
            results = generator.generate_batch(rows.tokens, **kwargs)
            for b, result in enumerate(results):
                rows.ids[b] = _output_ids(result.sequences_ids[0],
                                          rows.requests[b].prompt_token_ids or [],
                                          kwargs["include_prompt_in_result"])
            return
        ids, times, prefix = rows.ids, rows.times, rows.prefix
        requests, samples, hooked = rows.requests, rows.samples, rows.hooked
        clock = now

        def callback(step) -> bool:
            if step.step < prefix:  # CTranslate2 reports the forced prompt tokens too
                return False
            b = step.batch_id
            token = step.token_id
            ids[b].append(token)
            times[b].append(clock())
            if hook and requests[b].should_stop(samples[b], (token,)):
                hooked[b] = True
                return True
            return False

        generator.generate_batch(rows.tokens, callback=callback, **kwargs)

    @staticmethod
    def _finish(token: int | None, end: set[int], p: SamplingParams) -> tuple[str | None, int | None]:
        """(finish_reason, stop_reason) if `token` ends a sample by itself, else (None, None)."""
        if token in end:
            return "stop", token if token in p.stop_token_ids else None
        return None, None

    def generate(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        p = requests[0].params
        if p.structured is not None:
            from .choice import choose

            return choose(self, requests)
        calls, options = self._plan(requests)
        end = self._end_ids(p)
        results = {id(r): EngineResult([None] * p.n) for r in requests}  # type: ignore[list-item]
        with self._generator_for(p) as generator:
            for rows in calls:
                kwargs, record = self._call_kwargs(rows, options, p)
                self._run(generator, rows, kwargs)
                for b, tokens in enumerate(rows.ids):
                    finish, reason = self._finish(tokens[-1] if tokens else None, end, p)
                    if finish is None or rows.hooked[b]:
                        finish, reason = "length", None  # the core names an emulated stop
                    result = results[id(rows.requests[b])]
                    result.received = record
                    result.samples[rows.samples[b]] = EngineSequence(
                        token_ids=tokens, finish_reason=finish, stop_reason=reason,
                        token_times=rows.times[b] or None,
                    )
        return [results[id(r)] for r in requests]

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        from .scoring import score

        return score(self, requests)

    def stream(self, request: EngineRequest) -> Iterator[TokenEvent]:
        return stream_as_batch_of_one(self, request)

    def stream_batch(self, requests: Sequence[EngineRequest]) -> Iterator[tuple[int, TokenEvent]]:
        """The batch's `generate_batch` calls (as `generate` splits them) run in a worker
        thread with the per-token callback, which hands each decoding step's tokens over
        together and stops a row once its request is aborted (see streaming.py)."""
        from .streaming import stream_calls

        if requests and requests[0].params.structured is not None:
            from .choice import stream_choices

            return stream_choices(self, requests)
        return stream_calls(self, requests)

    def close(self) -> None:
        self._generator = None


def _output_ids(sequence: list[int], prompt: list[int], with_prompt: bool) -> list[int]:
    """The generated ids of a result: with `include_prompt_in_result`, CTranslate2 puts the
    prompt first (without its first token when that is the bos token)."""
    if not with_prompt:
        return sequence
    if sequence[: len(prompt)] == prompt:
        return sequence[len(prompt):]
    if sequence[: len(prompt) - 1] == prompt[1:]:
        return sequence[len(prompt) - 1:]
    raise RuntimeError("a result does not start with its prompt")  # the core names the engine
