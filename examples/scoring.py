"""Score text instead of generating it: log-likelihoods as lm-evaluation-harness defines them,
on every installed engine that can score, and the prompt's logprobs on a generation.

    python examples/scoring.py              # no download: a tiny model built locally
"""

import unillm
from unillm.testing import resolve_model

model = resolve_model("test:llama-tiny")
question = "Question: what colour is the sky on a clear day?\nAnswer:"
choices = [" blue", " green", " loud"]

with unillm.load("transformers", model, dtype="float32") as gen:
    # lm-eval's loglikelihood: (context, continuation) -> log-probability and is_greedy
    scores = gen.score([(question, c) for c in choices])
    for choice, s in zip(choices, scores):
        print(f"{choice!r:9} logprob={s.logprob:8.3f} tokens={len(s.tokens)} greedy={s.is_greedy}")
    best = max(zip(choices, scores), key=lambda cs: cs[1].logprob)[0]
    print(f"the model prefers {best!r}; {scores.timing.tokens} tokens scored in "
          f"{scores.timing.e2e * 1000:.1f} ms")

    # lm-eval's loglikelihood_rolling: a whole text, in windows when it is long
    text = "A river begins as rain on a hillside. The water finds the lowest path. " * 3
    rolling = gen.score_rolling(text)
    print(f"perplexity {rolling.perplexity:.1f} over {rolling.scored} tokens, "
          f"{rolling.windows} window(s)")

    # vLLM's prompt_logprobs on a generation: None for the first prompt token
    out = gen.generate("The quick brown fox", {"max_tokens": 4, "temperature": 0,
                                               "prompt_logprobs": 1})
    print("prompt logprobs:", [None if lp is None else round(lp.logprob, 2)
                               for lp in out.prompt_logprobs])

# the same numbers from every engine that computes in float32
for engine, options in [("ctranslate2", {"compute_type": "float32"}),
                        ("llamacpp", {"quantization": "f32", "kv_cache_type": "f32"})]:
    info = {i.name: i for i in unillm.engines()}.get(engine)
    if info is None or info.status != "installed":
        print(f"{engine}: not installed")
        continue
    with unillm.load(engine, model, **options) as other:
        theirs = other.score([(question, c) for c in choices])
        worst = max(abs(a.logprob - b.logprob) for a, b in zip(scores, theirs))
        print(f"{engine}: same scores as transformers within {worst:.1e}")
