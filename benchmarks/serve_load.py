"""Load test of `unillm serve`: many concurrent streaming clients on loopback.

1. The engine's offline greedy output for every prompt (one `generate` call, in this process).
2. `unillm serve` starts in a subprocess (the real command line).
3. Throughput ratio, at `--ratio-clients` (64) concurrent clients: offline batch throughput
   (`generate` on those prompts in one call, in this process, the server idle) and served
   throughput (that many clients at once, each streaming its own prompt) are measured in
   alternation, `--repeats` times each; the ratio is the ratio of medians (served / offline).
4. The full run: `--clients` (256) concurrent streaming clients, each with its own prompt,
   greedy. Every response must be complete (ends with [DONE]) and equal to the offline output
   for its prompt; any non-2xx, cut or mixed response is counted as a failure.

Figures follow docs/metrics.md, measured by the clients: TTFT from sending the request to the
first content chunk; ITL every gap between consecutive content chunks (one token each here);
output tokens from the server's usage figures; throughput = output tokens / wall time from
the first request sent to the last token received.

    python benchmarks/serve_load.py --model test:llama-small --clients 256 --ratio-clients 64 \
        --max-tokens 32 --out serve_load.json

On a shared 2-core machine the clients (this process) and the server share the CPUs: say so
when quoting the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

import unillm
from unillm.testing import resolve_model

WORDS = ("the quick brown fox jumps over a lazy dog while def return class import yield lambda "
         "async await").split()


def make_prompts(count: int) -> list[str]:
    """Distinct prompts of 2 to 10 words (so batches are padded, as real traffic is)."""
    return [f"{i}: " + " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(1 + i % 9))
            for i in range(count)]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -- the server ------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, model: str, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "unillm.cli", "serve", "--engine", args.engine, "--model", model,
           "--served-model-name", "bench", "--port", str(port), "--log-level", "warning",
           "--max-batch-size", str(args.max_batch_size), "--max-queue", str(args.clients * 2),
           "--batch-wait-ms", str(args.batch_wait_ms),
           "--max-batch-wait-ms", str(args.max_batch_wait_ms), "--scheduling", args.scheduling]
    for option in args.engine_option:
        cmd += ["--engine-option", option]
    env = {**os.environ}
    env.pop("UNILLM_API_KEY", None)
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"unillm serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("unillm serve did not become healthy in 300 s")


# -- clients ---------------------------------------------------------------------------------
async def one_client(client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int) -> dict:
    body = {"model": "bench", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    sent = time.perf_counter()
    out: dict = {"status": None, "text": "", "times": [], "done": False, "tokens": 0,
                 "sent": sent}
    try:
        async with client.stream("POST", url, json=body) as r:
            out["status"] = r.status_code
            if r.status_code != 200:
                await r.aread()
                return out
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    out["done"] = True
                    continue
                payload = json.loads(line[6:])
                if payload.get("usage"):
                    out["tokens"] = payload["usage"]["completion_tokens"]
                for choice in payload.get("choices", []):
                    if choice["text"]:
                        out["times"].append(time.perf_counter())
                        out["text"] += choice["text"]
    except httpx.HTTPError as exc:
        out["error"] = repr(exc)
    return out


async def run_clients(url: str, prompts: list[str], max_tokens: int) -> tuple[list[dict], float]:
    limits = httpx.Limits(max_connections=len(prompts) + 8, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(1800.0), limits=limits) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(one_client(client, url, p, max_tokens)
                                         for p in prompts))
    last = max((r["times"][-1] for r in results if r["times"]), default=time.perf_counter())
    return results, last - start


def summarize(results: list[dict], wall: float, expected: list[str]) -> dict:
    ttft, itl = [], []
    tokens = 0
    failures = {"non_2xx": 0, "incomplete": 0, "mismatch": 0}
    for r, want in zip(results, expected):
        if r["status"] != 200:
            failures["non_2xx"] += 1
            continue
        if not r["done"]:
            failures["incomplete"] += 1
        if r["text"] != want:
            failures["mismatch"] += 1
        if r["times"]:
            ttft.append(r["times"][0] - r["sent"])
            itl.extend(b - a for a, b in zip(r["times"], r["times"][1:]))
        tokens += r["tokens"]
    ms = 1000.0
    return {
        "clients": len(results), "wall_s": wall, "output_tokens": tokens,
        "requests_per_s": len(results) / wall, "output_tokens_per_s": tokens / wall,
        "ttft_p50_ms": percentile(ttft, 50) * ms, "ttft_p99_ms": percentile(ttft, 99) * ms,
        "itl_p50_ms": percentile(itl, 50) * ms, "itl_p99_ms": percentile(itl, 99) * ms,
        **failures,
    }


# -- main ------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", default="transformers")
    ap.add_argument("--model", default="test:llama-small")
    ap.add_argument("--engine-option", action="append", default=None,
                    help="key=value (default: dtype=float32)")
    ap.add_argument("--clients", type=int, default=256)
    ap.add_argument("--ratio-clients", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-batch-size", type=int, default=64)
    ap.add_argument("--batch-wait-ms", type=float, default=5.0)
    ap.add_argument("--max-batch-wait-ms", type=float, default=500.0)
    ap.add_argument("--scheduling", default="auto",
                    help="unillm serve --scheduling (auto: the engine's running batch if it has one)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="serve_load.json")
    args = ap.parse_args()
    if args.engine_option is None:
        args.engine_option = ["dtype=float32"]
    from unillm.cli.options import parse_pairs

    load_at_start = os.getloadavg()
    model = resolve_model(args.model)
    prompts = make_prompts(args.clients)
    greedy = unillm.SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
    gen = unillm.load(args.engine, model, **parse_pairs(args.engine_option, "--engine-option"))
    print(f"offline greedy reference for {len(prompts)} prompts ...", flush=True)
    expected = [c.text for c in gen.generate(prompts, greedy)]
    ratio_prompts = prompts[: args.ratio_clients]
    gen.generate(ratio_prompts[:8], greedy)  # warm-up

    port = free_port()
    proc = start_server(args, model, port)
    url = f"http://127.0.0.1:{port}/v1/completions"
    try:
        asyncio.run(run_clients(url, ratio_prompts[:8], args.max_tokens))  # warm-up
        offline_tps, served_tps, served_runs = [], [], []
        offline_cpu, served_cpu = [], []  # CPU seconds per 1000 output tokens
        for i in range(args.repeats):
            for side in (("offline", "served") if i % 2 == 0 else ("served", "offline")):
                if side == "offline":
                    cpu = time.process_time()
                    out = gen.generate(ratio_prompts, greedy)
                    offline_cpu.append(1000 * (time.process_time() - cpu) / out.run.output_tokens)
                    offline_tps.append(out.run.output_tokens / out.run.wall)
                else:
                    cpu = cpu_seconds(proc.pid)
                    results, wall = asyncio.run(run_clients(url, ratio_prompts, args.max_tokens))
                    run = summarize(results, wall, expected[: args.ratio_clients])
                    served_cpu.append(1000 * (cpu_seconds(proc.pid) - cpu) / run["output_tokens"])
                    served_runs.append(run)
                    served_tps.append(run["output_tokens_per_s"])
            print(f"  repeat {i + 1}: offline {offline_tps[-1]:.0f} tok/s, served "
                  f"{served_tps[-1]:.0f} tok/s", flush=True)
        gen.close()
        print(f"{args.clients} concurrent streaming clients ...", flush=True)
        results, wall = asyncio.run(run_clients(url, prompts, args.max_tokens))
        full = summarize(results, wall, expected)
        metrics_text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    finally:
        proc.terminate()
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()

    ratio = statistics.median(served_tps) / statistics.median(offline_tps)
    ratio_run = min(served_runs, key=lambda r: abs(r["output_tokens_per_s"]
                                                   - statistics.median(served_tps)))
    batches = [line for line in metrics_text.splitlines()
               if line.startswith(("unillm_batch_size_count", "unillm_batch_size_sum",
                                   "unillm_static_path_requests_total"))]
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "engine": args.engine, "model": args.model, "engine_options": args.engine_option,
        "max_tokens": args.max_tokens, "max_batch_size": args.max_batch_size,
        "scheduling": args.scheduling,
        "cpu_count": os.cpu_count(), "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "full": full,
        "ratio": {
            "clients": args.ratio_clients, "repeats": args.repeats,
            "offline_tokens_per_s": offline_tps, "served_tokens_per_s": served_tps,
            "served_over_offline": ratio, "median_served_run": ratio_run,
            "offline_cpu_s_per_1k_tokens": offline_cpu,
            "server_cpu_s_per_1k_tokens": served_cpu,
            "cpu_ratio_offline_over_server": statistics.median(offline_cpu)
            / statistics.median(served_cpu),
        },
        "server_batches": batches,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    rows = [("clients", f"{full['clients']}", f"{args.ratio_clients}"),
            ("requests/s", f"{full['requests_per_s']:.2f}", f"{ratio_run['requests_per_s']:.2f}"),
            ("output tokens/s", f"{full['output_tokens_per_s']:.0f}",
             f"{ratio_run['output_tokens_per_s']:.0f}"),
            ("TTFT p50 / p99 ms", f"{full['ttft_p50_ms']:.0f} / {full['ttft_p99_ms']:.0f}",
             f"{ratio_run['ttft_p50_ms']:.0f} / {ratio_run['ttft_p99_ms']:.0f}"),
            ("ITL p50 / p99 ms", f"{full['itl_p50_ms']:.1f} / {full['itl_p99_ms']:.1f}",
             f"{ratio_run['itl_p50_ms']:.1f} / {ratio_run['itl_p99_ms']:.1f}"),
            ("non-2xx / incomplete / mismatched",
             f"{full['non_2xx']} / {full['incomplete']} / {full['mismatch']}",
             f"{ratio_run['non_2xx']} / {ratio_run['incomplete']} / {ratio_run['mismatch']}")]
    print(f"\n{'':36}{'full run':>20}{'ratio run (median)':>22}")
    for name, a, b in rows:
        print(f"{name:36}{a:>20}{b:>22}")
    print(f"\noffline batch of {args.ratio_clients}: {statistics.median(offline_tps):.0f} tok/s "
          f"(median of {args.repeats}); served: {statistics.median(served_tps):.0f} tok/s; "
          f"served / offline = {ratio:.2f}")
    print(f"CPU seconds per 1000 output tokens: offline {statistics.median(offline_cpu):.2f}, "
          f"server process {statistics.median(served_cpu):.2f} (clients not included): "
          f"offline / server = {report['ratio']['cpu_ratio_offline_over_server']:.2f}")
    print(f"report written to {args.out}")
    failed = full["non_2xx"] + full["incomplete"] + full["mismatch"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
