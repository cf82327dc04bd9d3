"""The transformers engine's per-step pieces: a streamer that stamps each step, OpenAI-style
penalties as a logits processor, and streaming a batch step by step (`stream_steps`).

`model.generate` runs in a worker thread; each decoding step's tokens come back through the
streamer and are handed to the consumer as `TokenEvent`s, so a server can stream many clients
from one left-padded batch. An aborted request's rows are stopped by a stopping criterion.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .._threads import pump
from ..engine import EngineRequest, EngineResult, TokenEvent
from ..results import TokenLogprob
from ..timing import now


class Timestamps:
    """A transformers streamer that records when each step's tokens were produced."""

    def __init__(self, on_step=None):
        self.times: list[float] = []
        self.on_step = on_step
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt
            self._prompt_seen = True
            return
        self.times.append(now())
        if self.on_step is not None:
            self.on_step(value)

    def end(self) -> None:
        if self.on_step is not None:
            self.on_step(None)


@contextmanager
def seeded(torch: Any, device: Any, seed: int | None) -> Iterator[None]:
    """torch's random state seeded for one call and restored after it, so a seeded call is
    reproducible and leaves the randomness of other calls alone."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def openai_penalties(presence: float, frequency: float, prompt_len: int):
    """presence/frequency penalties as OpenAI and vLLM define them (output tokens only)."""
    import torch
    from transformers import LogitsProcessor

    class OpenAIPenalties(LogitsProcessor):
        def __call__(self, input_ids, scores):
            generated = input_ids[:, prompt_len:]
            if generated.shape[1] == 0:
                return scores
            counts = torch.zeros_like(scores)
            counts.scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
            return scores - frequency * counts - presence * (counts > 0).to(scores.dtype)

    return OpenAIPenalties()



def constrained_logits(matchers, prompt_len: int):
    """A logits processor masking each row to what its constraint allows next (after
    advancing the row's matcher by the token sampled at the previous step)."""
    from transformers import LogitsProcessor

    from ..grammars import mask_logits_torch

    class Constrained(LogitsProcessor):
        def __call__(self, input_ids, scores):
            last = input_ids[:, -1].tolist() if input_ids.shape[1] > prompt_len else None
            mask_logits_torch(scores, matchers, last)
            return scores

    return Constrained()


def sampling_warpers(p) -> list:
    """transformers' own sampling warpers for `p`, in generate's order, to run after a mask."""
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    warpers: list = []
    if p.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(p.temperature))
    if p.top_k:
        warpers.append(TopKLogitsWarper(p.top_k))
    if p.top_p < 1.0:
        warpers.append(TopPLogitsWarper(p.top_p))
    if p.min_p:
        warpers.append(MinPLogitsWarper(p.min_p))
    return warpers


def token_logprobs(torch, logits, row: int, tokens: list[int], top: int) -> list[TokenLogprob]:
    """Each token's log-probability in row `row` of the per-step `logits`, with the `top`
    most likely alternatives."""
    out = []
    for step, token in enumerate(tokens):
        lp = torch.log_softmax(logits[step][row].float(), dim=-1)
        alternatives = {}
        if top:
            values, indices = lp.topk(top)
            alternatives = dict(zip(indices.tolist(), values.tolist()))
        out.append(TokenLogprob(token, float(lp[token]), alternatives))
    return out


def stream_steps(engine: Any,
                 requests: Sequence[EngineRequest]) -> Iterator[tuple[int, TokenEvent]]:
    """One left-padded `generate` call over `requests`, its tokens yielded step by step as
    ``(request index, event)``; each request's first event reports what `generate` got."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    torch = engine.torch
    p = requests[0].params
    n = p.n
    rows = len(requests) * n
    ids, mask, width = engine._inputs(requests)
    kwargs, record = engine._generation_kwargs(p, width)
    kwargs["generation_config"].output_logits = False
    engine._constrain(kwargs, record, p, rows, width)
    reported = [False] * len(requests)
    raw_logits: list = []  # the last position's logits of each forward pass
    from .hf_scoring import prompt_logprobs

    prompts = prompt_logprobs(engine, requests)

    def run(put, cancelled) -> None:
        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids, scores, **_):
                if cancelled.is_set():
                    stop = [True] * rows
                else:
                    stop = [requests[row // n].aborted for row in range(rows)]
                return torch.tensor(stop, dtype=torch.bool, device=input_ids.device)

        def on_step(value) -> None:
            if value is None:  # the streamer's end: the pump ends when `run` returns
                return
            tokens = value.tolist()
            lps = None
            if p.logprobs is not None and raw_logits:
                logits = raw_logits.pop(0)
                lps = [engine._logprobs([logits], row, [tok], p.logprobs)[0]
                       for row, tok in enumerate(tokens)]
            put((tokens, lps))

        def capture(_module, _inputs, output) -> None:
            raw_logits.append(output.logits[:, -1].detach())

        hook = engine.model_obj.register_forward_hook(capture) if p.logprobs is not None else None
        try:
            with torch.inference_mode(), seeded(torch, engine.device, p.seed):
                engine.model_obj.generate(
                    input_ids=ids, attention_mask=mask, streamer=Timestamps(on_step),
                    stopping_criteria=StoppingCriteriaList([_Cancel()]), **kwargs,
                )
        finally:
            if hook is not None:
                hook.remove()

    terminators = set(kwargs["generation_config"].eos_token_id or ())
    finished = [False] * rows
    counts = [0] * rows
    steps = pump(run, name="unillm-transformers")
    try:
        for tokens, lps in steps:
            for row, token in enumerate(tokens):
                if finished[row]:
                    continue
                if requests[row // n].aborted:  # the core ends it; emit nothing more
                    finished[row] = True
                    continue
                counts[row] += 1
                finish = reason = None
                if token in terminators and counts[row] > p.min_tokens:
                    finish = "stop"
                    reason = token if token in p.stop_token_ids else None
                elif counts[row] >= p.max_tokens:
                    finish = "length"
                if finish:
                    finished[row] = True
                result = None
                if not reported[row // n]:  # what ran, once per request
                    reported[row // n] = True
                    result = EngineResult(received=dict(record),
                                          prompt_logprobs=prompts[row // n])
                yield row // n, TokenEvent(
                    row % n, (token,), finish_reason=finish, stop_reason=reason,
                    logprobs=[lps[row]] if lps else None, result=result,
                )
        for row in range(rows):
            if not finished[row]:
                yield row // n, TokenEvent(row % n, (), finish_reason="length")
    finally:
        steps.close()  # cancels generate and waits for it

