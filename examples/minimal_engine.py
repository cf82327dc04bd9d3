"""A complete unillm engine: token ids in, token ids out (docs/plugins.md walks through it).

It runs a Hugging Face model's forward pass in a plain loop and registers itself through the
`unillm` hook exactly as a plugin package does (its entry point would name this module).
unillm does the rest: prompts, stop strings and stop token ids, n, detokenizing, timing.
examples/minimal_engine_test.py runs the conformance kit against it.
"""

from __future__ import annotations

import sys

import unillm
from unillm.engine import Capabilities, Engine, EngineOptions, EngineResult, EngineSequence, TokenEvent
from unillm.timing import now


class MinimalOptions(EngineOptions):
    """This engine's options (none; an unknown one is refused, naming it)."""


class MinimalEngine(Engine):
    Options = MinimalOptions
    # Honoured natively, for any value. unillm emulates stop, stop_token_ids and n, and refuses
    # every other field with UnsupportedParameterError; none is ever silently dropped.
    capabilities = Capabilities(
        params=frozenset({"max_tokens", "temperature", "top_k", "seed", "ignore_eos"}),
        batch_params="per_request", stop_hook=True)

    def __init__(self, model: str, options: MinimalOptions):
        super().__init__(model, options)
        import torch  # the engine's libraries: imported when it loads, never when listed
        from transformers import AutoModelForCausalLM

        from unillm.tokenizer import HFTokenizer

        self.torch = torch
        self.net = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
        self.tokenizer = HFTokenizer.from_pretrained(model)  # unillm tokenizes with this
        self.context_length = self.net.config.max_position_embeddings

    def _steps(self, request):
        """Each new token and its finish reason: "stop" at eos, "length" at max_tokens."""
        torch, p = self.torch, request.params
        rng = torch.Generator()  # this request's own: other calls never move its stream
        if p.seed is None:
            rng.seed()
        else:
            rng.manual_seed(p.seed)
        ends = frozenset() if p.ignore_eos else self.tokenizer.eos_token_ids
        ids, cache = torch.tensor([request.prompt_token_ids]), None
        with torch.no_grad():
            for count in range(1, p.max_tokens + 1):
                out = self.net(input_ids=ids, past_key_values=cache, use_cache=True)
                logits, cache = out.logits[0, -1], out.past_key_values
                if p.temperature == 0:
                    token = int(logits.argmax())
                else:
                    if p.top_k is not None and p.top_k < logits.numel():
                        logits[logits < logits.topk(p.top_k).values[-1]] = -float("inf")
                    probs = torch.softmax(logits / p.temperature, dim=-1)
                    token = int(torch.multinomial(probs, 1, generator=rng))
                yield token, "stop" if token in ends else "length" if count == p.max_tokens else None
                ids = torch.tensor([[token]])

    def _received(self, request) -> dict:
        """What this engine really used: users see it as Completion.engine_params."""
        p = request.params
        return {"max_tokens": p.max_tokens, "temperature": p.temperature, "top_k": p.top_k,
                "seed": p.seed, "ends": sorted(() if p.ignore_eos else self.tokenizer.eos_token_ids)}

    def generate(self, requests):
        results = []
        for request in requests:
            ids, times = [], []
            for token, finish in self._steps(request):
                ids.append(token)  # the terminating token (eos) included
                times.append(now())
                if finish or request.should_stop(0, (token,)):  # unillm's stop matched
                    break
            sample = EngineSequence(ids, finish or "length", token_times=times)
            results.append(EngineResult([sample], received=self._received(request)))
        return results

    def stream(self, request):  # closing this generator stops generation
        yield TokenEvent(result=EngineResult(received=self._received(request)))
        for token, finish in self._steps(request):
            yield TokenEvent(0, (token,), finish_reason=finish)
            if finish:
                return


@unillm.hookimpl
def unillm_register_engines(register):
    register("minimal", MinimalEngine, requires=("torch", "transformers"),
             description="examples/minimal_engine.py: a forward-pass loop over transformers")


if __name__ == "__main__":
    unillm.register_plugin(sys.modules[__name__], name="minimal-engine")
    model = str(unillm.testing.build_test_model("llama-tiny"))
    params = unillm.SamplingParams(max_tokens=16, temperature=0, stop=["\n\n"])
    out = unillm.load("minimal", model).generate("def fibonacci(n):", params)
    ref = unillm.load("transformers", model, dtype="float32").generate("def fibonacci(n):", params)
    print(f"minimal: {out.text!r} {out.finish_reason} tokens={len(out.token_ids)}")
    print(f"same tokens as transformers: {out.token_ids == ref.token_ids}")
