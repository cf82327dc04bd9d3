"""What one `llama_decode` of the llama.cpp running batch costs, by what the step holds.

Builds steps by hand on the running batch's own context (`parallel` sequences with a KV
stream each) and times each kind (median of `--repeats`): decoding steps of D sequences with
consecutive ids, the same with every other id (the gaps the running batch no longer leaves),
prompt-only steps and decoding steps with prompts in them. llama.cpp cuts a step over separate
KV streams into micro-batches of consecutive sequence ids taking as many tokens from each, so
the ids a step holds change its cost, not only its tokens.

    python benchmarks/llamacpp_step_cost.py --model test:llama-small
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import unillm
from unillm.testing import resolve_model

Chunk = tuple[int, int, int]  # (sequence id, first position, tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="test:llama-small")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--position", type=int, default=50, help="tokens each decoding one holds")
    ap.add_argument("--prompt", type=int, default=42, help="tokens of each prompt")
    ap.add_argument("--out", help="write the results here (JSON)")
    a = ap.parse_args()
    gen = unillm.load("llamacpp", resolve_model(a.model), quantization="f32",
                      kv_cache_type="f32", n_threads=a.threads, parallel=96, parallel_ctx=128)
    running = gen.running_batch()  # its loop waits: nothing is added to it
    lib, ctx, batch = running.lib, running.ctx, running.batch

    def decode(chunks: list[Chunk]) -> float:
        n = 0
        for seq, pos, count in chunks:
            for k in range(count):
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = 100 + (seq * 7 + k) % 900, \
                    pos + k, 1
                batch.seq_id[n][0], batch.logits[n] = seq, k == count - 1
                n += 1
        batch.n_tokens = n
        start = time.perf_counter()
        if lib.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        return time.perf_counter() - start

    def holding(seqs: list[int]) -> Callable[[], None]:
        def fill() -> None:  # each of `seqs` holds `--position` tokens
            chunks: list[Chunk] = []
            for seq in seqs:
                if (len(chunks) + 1) * a.position > running.batch_tokens:
                    decode(chunks)
                    chunks = []
                chunks.append((seq, 0, a.position))
            if chunks:
                decode(chunks)
        return fill

    def decoding(seqs: list[int]) -> list[Chunk]:
        return [(s, a.position, 1) for s in seqs]

    def prompts(seqs: list[int]) -> list[Chunk]:
        return [(s, 0, a.prompt) for s in seqs]

    cases: list[tuple[str, list[int], list[Chunk]]] = [
        *((f"decode {d}, consecutive ids", list(range(d)), decoding(list(range(d))))
          for d in (1, 8, 32, 64)),
        ("decode 32, every other id", list(range(0, 64, 2)), decoding(list(range(0, 64, 2)))),
        *((f"prompts {k} x {a.prompt}", [], prompts(list(range(k)))) for k in (1, 4, 12)),
        *((f"decode 64 + prompts {k} x {a.prompt}, ids after", list(range(64)),
           decoding(list(range(64))) + prompts(list(range(64, 64 + k)))) for k in (1, 2, 10)),
    ]
    among = [s for s in range(66) if s not in (10, 40)]  # prompts of ids 10 and 40 among them
    cases += [
        (f"decode 64 + prompts 2 x {a.prompt}, ids 10, 40, in id order", among,
         [c for s in range(66) for c in (prompts([s]) if s in (10, 40) else decoding([s]))]),
        (f"decode 64 + prompts 2 x {a.prompt}, ids 10, 40, prompts last", among,
         decoding(among) + prompts([10, 40])),
    ]
    rows = []
    for name, held, chunks in cases:
        times = []
        for _ in range(a.repeats):
            lib.llama_memory_clear(running.memory, True)
            holding(held)()
            times.append(decode(chunks))
        tokens = sum(c[2] for c in chunks)
        ms = statistics.median(times) * 1e3
        rows.append({"step": name, "tokens": tokens, "median_ms": round(ms, 1),
                     "ms_per_token": round(ms / tokens, 2)})
        print(f"{name:44s} {ms:8.1f} ms {tokens:5d} tokens {ms / tokens:6.2f} ms/token",
              flush=True)
    gen.close()
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"model": a.model, "threads": a.threads, "steps": rows}, f, indent=1)


if __name__ == "__main__":
    main()
