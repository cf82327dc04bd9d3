"""unillm's SamplingParams as a llama.cpp sampler chain, built explicitly for each request.

llama-cpp-python's `Llama.generate` builds its own chain from its defaults (top_k 40, top_p
0.95, min_p 0.05, temperature 0.8, a 64-token penalty window) and in llama.cpp's order
(filters first, temperature last). This chain is built here instead, from unillm's semantics,
which are transformers' and vLLM's:

- temperature first, then top-k, top-p, min-p on the tempered distribution, then a draw from a
  generator seeded per request (`seed`, or llama.cpp's random seed when None); temperature 0
  is argmax, and the filters are then unused;
- `repetition_penalty` counts prompt and output tokens (the prompt is fed to its penalty
  sampler before generating), `presence_penalty`/`frequency_penalty` count output tokens only
  (OpenAI's definition); llama.cpp has one sampler for all three over the same tokens, so two
  are chained. Both windows span the whole context;
- top-k is left out of the chain when off or when k is at least the vocabulary (llama.cpp's
  top_k(0) would sort the whole vocabulary to keep all of it, and a sorted candidate list maps
  the same random draw to another token); typical-p, XTC, DRY, mirostat and top-n-sigma are
  never in the chain.

`record` is what the chain holds, for `Completion.engine_params`.
"""

from __future__ import annotations

from typing import Any

from unillm import SamplingParams, UnsupportedParameterError


class SamplerChain:
    """One request's llama.cpp sampler chain. `close()` frees it."""

    def __init__(self, params: SamplingParams, *, n_vocab: int, window: int,
                 prompt_ids: list[int], engine: str = "llamacpp"):
        import llama_cpp

        self._lib = lib = llama_cpp
        p = params
        if p.seed is not None and p.seed == lib.LLAMA_DEFAULT_SEED:
            raise UnsupportedParameterError(
                engine, "seed", p.seed,
                f"llama.cpp reserves {lib.LLAMA_DEFAULT_SEED} (LLAMA_DEFAULT_SEED) for 'random'",
            )
        self.chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        names: list[str] = []

        def add(sampler: Any, name: str) -> Any:
            lib.llama_sampler_chain_add(self.chain, sampler)
            names.append(name)
            return sampler

        # The binding's first argument is n_vocab; the second is the window (tokens remembered).
        repeat = lib.llama_sampler_init_penalties(n_vocab, window, p.repetition_penalty, 0.0, 0.0)
        for token in prompt_ids if p.repetition_penalty != 1.0 else ():
            lib.llama_sampler_accept(repeat, token)  # before joining the chain: prompt only here
        add(repeat, f"penalties(repeat={p.repetition_penalty}, last_n={window}, prompt included)")
        add(lib.llama_sampler_init_penalties(n_vocab, window, 1.0, p.frequency_penalty,
                                             p.presence_penalty),
            f"penalties(frequency={p.frequency_penalty}, presence={p.presence_penalty}, "
            f"last_n={window}, output only)")
        seed = lib.LLAMA_DEFAULT_SEED if p.seed is None else p.seed
        # Off (0) unless it removes something: top_k(k >= vocabulary) keeps every token but
        # sorts them, which changes which token a given random draw picks.
        top_k = p.top_k if p.top_k is not None and p.top_k < n_vocab else 0
        if p.is_greedy:
            add(lib.llama_sampler_init_greedy(), "greedy")
        else:
            add(lib.llama_sampler_init_temp(p.temperature), f"temp({p.temperature})")
            if top_k:
                add(lib.llama_sampler_init_top_k(top_k), f"top_k({top_k})")
            add(lib.llama_sampler_init_top_p(p.top_p, 1), f"top_p({p.top_p}, min_keep=1)")
            add(lib.llama_sampler_init_min_p(p.min_p, 1), f"min_p({p.min_p}, min_keep=1)")
            add(lib.llama_sampler_init_dist(seed), f"dist(seed={seed})")
        self.record: dict[str, Any] = {
            "greedy": p.is_greedy,
            "temp": 0.0 if p.is_greedy else p.temperature,
            "top_k": 0 if p.is_greedy else top_k,  # llama.cpp: 0 = off
            "top_p": 1.0 if p.is_greedy else p.top_p,
            "min_p": 0.0 if p.is_greedy else p.min_p,
            "typical_p": 1.0, "mirostat_mode": 0,  # never in the chain
            "repeat_penalty": p.repetition_penalty,
            "frequency_penalty": p.frequency_penalty,
            "presence_penalty": p.presence_penalty,
            "penalty_last_n": window,
            "seed": None if p.is_greedy else seed,
            "sampler_chain": names,
        }

    def sample(self, ctx: Any, index: int = -1) -> int:
        """Draw from the logits at `index` of the last decoded batch (-1: its last position)
        and accept the token."""
        return self._lib.llama_sampler_sample(self.chain, ctx, index)

    def close(self) -> None:
        if self.chain is not None:
            self._lib.llama_sampler_free(self.chain)
            self.chain = None

    def __enter__(self) -> SamplerChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
