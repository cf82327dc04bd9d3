"""vLLM: `LLM.generate` on the same `LLM` object, with the same SamplingParams unillm sends.

The direct path gives vLLM the prompt texts, as a user of `LLM.generate` does: vLLM tokenizes
them and detokenizes the outputs (unillm tokenizes and decodes itself).
"""

from __future__ import annotations


def direct(gen, prompts, params):
    import vllm

    llm = gen.engine.llm
    sampling = vllm.SamplingParams(
        n=params.n, max_tokens=params.max_tokens, min_tokens=params.min_tokens,
        temperature=params.temperature, top_p=params.top_p,
        top_k=params.top_k if params.top_k is not None else vllm.SamplingParams().top_k,
        min_p=params.min_p, repetition_penalty=params.repetition_penalty,
        presence_penalty=params.presence_penalty, frequency_penalty=params.frequency_penalty,
        seed=params.seed, stop=list(params.stop), stop_token_ids=list(params.stop_token_ids),
        ignore_eos=params.ignore_eos, logprobs=params.logprobs,
    )

    def run() -> int:
        outputs = llm.generate(list(prompts), sampling, use_tqdm=False)
        return sum(len(c.token_ids) for o in outputs for c in o.outputs)

    return run
