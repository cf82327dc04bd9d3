"""llama.cpp: llama-cpp-python's own token loop (`Llama.generate`) on the same `Llama` object.

The direct path tokenizes with llama.cpp, resets the context before each prompt (unillm
evaluates every prompt afresh too, instead of `Llama.generate`'s prefix reuse), runs greedy
decoding for exactly max_tokens tokens, and detokenizes: what a user of llama-cpp-python writes.
"""

from __future__ import annotations


def direct(gen, prompts, params):
    llm = gen.engine.llm

    def run() -> int:
        made = 0
        for prompt in prompts:
            ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
            llm.reset()
            out = []
            for token in llm.generate(ids, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0,
                                      temp=0.0, repeat_penalty=1.0):
                out.append(token)
                if len(out) == params.max_tokens:
                    break
            llm.detokenize(out)
            made += len(out)
        return made

    return run
