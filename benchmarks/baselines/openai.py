"""openai: the official `openai` Python client against the same server, with the same request
fields unillm sends (read back from a unillm call's `engine_params`) and the same concurrency
(`max_concurrency` threads), so the difference is the client alone.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def direct(gen, prompts, params):
    import openai

    engine = gen.engine
    options = engine.options
    key = options.api_key.get_secret_value() if options.api_key else "none"
    client = openai.OpenAI(base_url=options.base_url, api_key=key,
                           max_retries=options.max_retries, timeout=options.timeout)
    sent = dict(gen.generate(prompts[0], params).engine_params)
    for key in ("endpoint", "server"):
        sent.pop(key)
    standard = {k: sent.pop(k) for k in ("max_tokens", "temperature", "top_p", "presence_penalty",
                                          "frequency_penalty", "n", "seed") if k in sent}

    def one(prompt: str) -> int:
        out = client.completions.create(model=gen.model, prompt=prompt, extra_body=sent,
                                        **standard)
        return out.usage.completion_tokens

    def run() -> int:
        with ThreadPoolExecutor(max_workers=min(options.max_concurrency, len(prompts))) as pool:
            return sum(pool.map(one, prompts))

    return run
