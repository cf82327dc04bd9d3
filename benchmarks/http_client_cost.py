"""What the `openai` engine costs on the client: CPU time per request, next to the official
`openai` client and bare httpx, against the same server with the same request body.

CPU time of this process (time.process_time), not wall time: the server's work and the
machine's other load do not count, so the figure holds on a busy machine. Streaming and
non-streaming calls, alternated, `--repeats` each; prints the median per request.

    python -m llama_cpp.server --model model.gguf --port 8000 --interrupt_requests false &
    python benchmarks/http_client_cost.py --base-url http://127.0.0.1:8000/v1 --server llama-cpp-python
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import unillm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--server", default="openai")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()

    import httpx
    import openai

    prompt = "The quick brown fox jumps over the lazy dog"
    params = unillm.SamplingParams(max_tokens=args.max_tokens, temperature=0.0, ignore_eos=True)
    gen = unillm.load("openai", base_url=args.base_url, server=args.server)
    sent = dict(gen.generate(prompt, params).engine_params)
    sent.pop("endpoint")
    sent.pop("server")
    body = {"model": gen.model, "prompt": prompt, **sent}
    raw = httpx.Client(timeout=600)
    client = openai.OpenAI(base_url=args.base_url, api_key="none")
    standard = {k: sent[k] for k in ("max_tokens", "temperature", "top_p", "presence_penalty",
                                     "frequency_penalty", "n") if k in sent}
    extra = {k: v for k, v in sent.items() if k not in standard}

    def raw_stream() -> None:
        with raw.stream("POST", args.base_url + "/completions", json={**body, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    json.loads(line[6:])

    def openai_stream() -> None:
        for _ in client.completions.create(model=gen.model, prompt=prompt, stream=True,
                                           extra_body=extra, **standard):
            pass

    cases = {
        "unillm generate": lambda: gen.generate(prompt, params),
        "openai client": lambda: client.completions.create(model=gen.model, prompt=prompt,
                                                           extra_body=extra, **standard),
        "httpx": lambda: raw.post(args.base_url + "/completions", json=body).json(),
        "unillm stream": lambda: [c for c in gen.stream(prompt, params)],
        "openai client stream": openai_stream,
        "httpx stream": raw_stream,
    }
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(2):  # warm-up
        for fn in cases.values():
            fn()
    for i in range(args.repeats):
        order = list(cases.items())
        if i % 2:
            order.reverse()
        for name, fn in order:
            start = time.process_time()
            fn()
            cpu[name].append(time.process_time() - start)
    gen.close()
    for name, values in cpu.items():
        print(f"{name:22s} client CPU per request: median {statistics.median(values) * 1000:6.2f} ms")


if __name__ == "__main__":
    main()
