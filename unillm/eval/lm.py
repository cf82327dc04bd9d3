"""`UnillmLM`: lm-evaluation-harness's `LM` interface over a unillm `Generator`.

- ``loglikelihood``: `Generator.score` on the (context, continuation) pairs, which tokenizes
  them as lm-eval's own Hugging Face model does (docs/scoring.md); a pair longer than the
  context is cut from the left of its context, as lm-eval does.
- ``loglikelihood_rolling``: `Generator.score_rolling`, lm-eval's rolling windows.
- ``generate_until``: `Generator.generate`, greedy unless the task samples, stopping at the
  task's ``until`` strings; a prompt longer than the context leaves room for ``max_gen_toks``
  by cutting its left (token-id engines), as lm-eval's models do.

Requests go to the engine `batch_size` at a time (one native batch each). An engine that cannot
tell whether a continuation is the greedy one (TGI) answers ``is_greedy`` False, with a warning:
the metrics that read it (e.g. lambada's acc) are then not meaningful.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from lm_eval.api.model import LM

import unillm

from ..generator import Generator

log = logging.getLogger("unillm.eval")

GEN_KWARGS = {"until", "max_gen_toks", "do_sample", "temperature", "top_p", "top_k", "min_p",
              "repetition_penalty", "seed", "max_tokens"}
"""generate_until arguments of lm-eval tasks that UnillmLM understands (others are an error)."""


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class UnillmLM(LM):
    """An lm-eval model backed by any unillm engine.

    Either pass a loaded `generator`, or `engine` and `model` (and the engine's options, as
    keyword arguments or an `options` dict) for `unillm.load`. `batch_size`: requests per engine
    call (lm-eval's ``--batch_size``; "auto" means 32). `device` (lm-eval's ``--device``) is
    given to the engine as its ``device`` option, unless it is None or "auto" (the engine's
    own choice). `max_gen_toks`: the generation limit of tasks that set none.
    """

    def __init__(self, engine: str | None = None, model: str | None = None, *,
                 generator: Generator | None = None, options: dict[str, Any] | None = None,
                 batch_size: int | str | None = None, max_batch_size: int | None = None,
                 device: str | None = None, max_gen_toks: int = 256,
                 **engine_options: Any) -> None:
        super().__init__()
        if generator is None:
            if engine is None:
                raise unillm.InvalidParameterError(
                    "engine", None, "an engine name, or generator=<a loaded Generator>",
                    owner="UnillmLM")
            if model is not None and str(model).startswith("test:"):
                from unillm.testing import build_test_model

                model = str(build_test_model(str(model)[5:]))
            merged = {**(options or {}), **engine_options}
            if device not in (None, "auto"):  # lm-eval's --device, as the engine's option
                merged.setdefault("device", device)
            generator = unillm.load(engine, model, **merged)
            self._owns = True
        else:
            self._owns = False
        self.generator = generator
        size = batch_size if isinstance(batch_size, int) else (
            int(batch_size) if isinstance(batch_size, str) and batch_size.isdigit() else 32)
        self.batch_size = max(1, min(size, max_batch_size or size))
        self.max_gen_toks = max_gen_toks
        self._warned_greedy = False

    # -- what lm-eval reads ------------------------------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        """Part of lm-eval's cache key: the engine and model."""
        return f"unillm-{self.generator.engine_name}-{self.generator.model}".replace("/", "__")

    # -- requests ----------------------------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        out: list[tuple[float, bool]] = []
        for batch in _batches([r.args for r in requests], self.batch_size):
            for pair, score in zip(batch, self.generator.score(list(batch), truncate=True)):
                out.append((score.logprob, self._greedy(score.is_greedy)))
                self.cache_hook.add_partial("loglikelihood", pair, out[-1])
        return out

    def _greedy(self, is_greedy: bool | None) -> bool:
        if is_greedy is None:
            if not self._warned_greedy:
                self._warned_greedy = True
                warnings.warn(f"engine {self.generator.engine_name!r} cannot tell whether a "
                              "continuation is the greedy one: is_greedy is reported False, "
                              "so metrics that read it are not meaningful", stacklevel=3)
            return False
        return is_greedy

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        out: list[float] = []
        for batch in _batches([r.args[0] for r in requests], self.batch_size):
            for text, score in zip(batch, self.generator.score_rolling(list(batch))):
                out.append(score.logprob)
                self.cache_hook.add_partial("loglikelihood_rolling", (text,), score.logprob)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str] = []
        for batch in _batches([r.args for r in requests], self.batch_size):
            prompts, params = [], []
            for context, gen_kwargs in batch:
                p = self._params(gen_kwargs)
                prompts.append(self._fit(context, p.max_tokens))
                params.append(p)
            for (context, gen_kwargs), completion in zip(
                    batch, self.generator.generate(prompts, params)):
                out.append(completion.text)
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs),
                                            completion.text)
        return out

    def _params(self, gen_kwargs: dict[str, Any]) -> unillm.SamplingParams:
        """lm-eval's generation arguments as unillm's `SamplingParams`."""
        kwargs = dict(gen_kwargs or {})
        unknown = sorted(set(kwargs) - GEN_KWARGS)
        if unknown:
            raise unillm.InvalidParameterError(
                unknown[0], kwargs[unknown[0]], f"one of {', '.join(sorted(GEN_KWARGS))} (the "
                "task's generation_kwargs that UnillmLM maps to SamplingParams)",
                owner="generation_kwargs")
        until = kwargs.get("until") or []
        if isinstance(until, str):
            until = [until]
        sample = bool(kwargs.get("do_sample", False)) and float(kwargs.get("temperature", 1.0)) > 0
        fields: dict[str, Any] = {
            "max_tokens": int(kwargs.get("max_gen_toks", kwargs.get("max_tokens", self.max_gen_toks))),
            "stop": [u for u in until if u],
            "temperature": float(kwargs.get("temperature", 1.0)) if sample else 0.0,
        }
        if sample:
            for name in ("top_p", "top_k", "min_p", "seed"):
                if kwargs.get(name) is not None:
                    fields[name] = kwargs[name]
        if kwargs.get("repetition_penalty") is not None:
            fields["repetition_penalty"] = float(kwargs["repetition_penalty"])
        return unillm.SamplingParams(**fields)

    def _fit(self, context: str, max_tokens: int) -> Any:
        """The prompt, cut from the left when it and `max_tokens` do not fit the context
        (token-id engines; a text engine's server judges its own context)."""
        gen = self.generator
        limit = gen.engine.context_length
        if limit is None or not gen.capabilities.token_ids or gen.tokenizer is None:
            return context
        ids = gen.tokenizer.encode(context)
        room = limit - max_tokens
        if len(ids) <= room or room < 1:
            return context
        return {"prompt_token_ids": ids[-room:]}

    def close(self) -> None:
        if self._owns:
            self.generator.close()
