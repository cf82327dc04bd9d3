"""Serving latency under load, measured with vLLM's own client (`vllm bench serve`).

For each server named with `--server` (all started at once, on their own ports, and measured
in turns, so that a busy machine slows them alike), 32 tokens in and 32 out (`--input-len`,
`--output-len`), eos ignored:

1. ``unloaded``: one request at a time (`--unloaded-requests`): TTFT with no queueing.
2. ``capacity``: `--concurrency` (64) requests at a time (`--capacity-requests`): requests/s.
3. ``poisson``: Poisson arrivals (gamma with `--burstiness`, 1 = Poisson) at `--load` (0.7) of
   that server's capacity, for about `--poisson-seconds`: TTFT p50 (and its ratio to the
   unloaded one), the share of the offered rate served, failures.
4. ``throughput`` (with `--throughput-runs` > 0): `--throughput-requests` (1,024) requests,
   `--concurrency` at a time, run alternately on every server `--throughput-runs` times; the
   ratio of each server's output tok/s to the first server's, per run, and their median.

Servers: ``NAME=unillm:ENGINE`` (`unillm serve`, engine options from `--engine-option
ENGINE:key=value` or `NAME:key=value`; ``unillm@TREE:ENGINE`` runs the unillm of another source tree, e.g. an
export of the commit before a change), ``NAME=llama-server`` (llama.cpp's own server on the same model's f32
GGUF, `--llama-parallel` slots), ``NAME=vllm`` (vLLM's server, where vLLM can run),
``NAME=standin-vllm[@TREE]`` (unillm's vLLM engine over a stand-in for vLLM's engine:
benchmarks/standin_vllm.py, for unillm's own per-token cost; `--serve-arg` passes its options).

    python benchmarks/serve_vllm_client.py --model test:llama-small \
        --server unillm=unillm:transformers -e transformers:dtype=float32 -e transformers:threads=1 \
        --out results.json

Every run draws prompts of its own (the seed moves with the round, the phase and the throughput
run; within one, every server gets the same): a server that keeps earlier prompts' KV cache
(llama-server's slots do, and vLLM's prefix cache) would otherwise skip reading the prompts it
saw in an earlier run and measure faster than it serves new ones. `--repeat-prompts` sends the
same prompts every time, to measure exactly that.

vLLM's client runs in its own environment (`--vllm-python`, default .venv-vllm next to this
venv, through benchmarks/vllm_cli.py). The machine's load average is recorded before and after:
quote it with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import free_port, stop_process, wait_until_ready  # noqa: E402

PHASES = ("unloaded", "capacity", "poisson")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- servers ---------------------------------------------------------------------------------
class Server:
    def __init__(self, name: str, kind: str, args: argparse.Namespace, model_dir: str):
        self.name, self.kind, self.args, self.model_dir = name, kind, args, model_dir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        # `python -m unillm.cli` puts its working directory first on sys.path: run each server
        # from the source tree it must import (this checkout unless @TREE says another).
        self.cwd = ROOT
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"serve-{name}-", suffix=".log",
                                               delete=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> tuple[list[str], dict[str, str]]:
        a, env = self.args, dict(os.environ)
        if self.kind.startswith("unillm"):
            head, engine = self.kind.split(":", 1)
            if "@" in head:  # another source tree (e.g. the code before a change)
                self.cwd = Path(head.split("@", 1)[1]).resolve()
                env["PYTHONPATH"] = os.pathsep.join(
                    [str(self.cwd), str(self.cwd / "plugins" / "unillm-llamacpp" / "src")])
            cmd = [sys.executable, "-m", "unillm.cli", "serve", "--engine", engine,
                   "--model", self.model_dir, "--served-model-name", "bench",
                   "--port", str(self.port), "--log-level", "warning", *a.serve_arg]
            for option in a.engine_option:
                target, _, pair = option.partition(":")
                if target in (engine, self.name):
                    cmd += ["--engine-option", pair]
            return cmd, env
        if self.kind.startswith("standin-vllm"):  # benchmarks/standin_vllm.py
            _, _, tree = self.kind.partition("@")
            if tree:
                env["PYTHONPATH"] = str(Path(tree).resolve())
            return [sys.executable, str(ROOT / "benchmarks" / "standin_vllm.py"),
                    "--model", self.model_dir, "--served-model-name", "bench",
                    "--port", str(self.port), *a.serve_arg], env
        if self.kind == "llama-server":
            from tests.servers.llama_server import binary
            from unillm_llamacpp.convert import cached_gguf

            exe = binary()
            if exe is None:
                raise SystemExit("llama-server is not built: bash scripts/build-llama-server.sh")
            slots = a.llama_parallel
            return [exe, "--model", str(cached_gguf(self.model_dir, "f32")), "--alias", "bench",
                    "--host", "127.0.0.1", "--port", str(self.port),
                    "--threads", str(a.llama_threads), "--parallel", str(slots),
                    "--ctx-size", str(slots * a.llama_ctx_per_slot),
                    "--cache-type-k", "f32", "--cache-type-v", "f32", "--flash-attn", "off",
                    "--log-disable"], env
        if self.kind == "vllm":
            env.update(VLLM_CPU_KVCACHE_SPACE="1",
                       VLLM_CACHE_ROOT=str(Path(tempfile.gettempdir()) / "unillm-vllm-cache"))
            return [a.vllm_python, "-m", "vllm.entrypoints.openai.api_server",
                    "--model", self.model_dir, "--served-model-name", "bench",
                    "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32",
                    "--max-model-len", "1024", "--seed", "0", *a.vllm_arg], env
        raise SystemExit(f"unknown server kind {self.kind!r}: unillm:ENGINE, llama-server or vllm")

    def start(self) -> None:
        cmd, env = self.command()
        self.started_as = {"command": cmd, "cwd": str(self.cwd),
                           "pythonpath": env.get("PYTHONPATH")}
        print(f"[{self.name}] {' '.join(cmd)}", file=sys.stderr)
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=self.cwd)

    def wait(self) -> None:
        assert self.proc is not None
        path = "/health" if self.kind == "llama-server" else "/v1/models"
        try:
            wait_until_ready(self.url + path, 600, alive=lambda: self.proc.poll() is None)
        except Exception:
            self.log.seek(0)
            print(self.log.read()[-4000:], file=sys.stderr)
            raise

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


# -- vLLM's client ---------------------------------------------------------------------------
def bench(server: Server, args: argparse.Namespace, *, requests: int, seed: int,
          concurrency: int | None = None, rate: float | None = None) -> dict:
    """One `vllm bench serve` run; its saved result (JSON) plus what it was asked. `seed` draws
    its prompts (`--repeat-prompts`: always `--seed`)."""
    seed = args.seed if args.repeat_prompts else seed
    with tempfile.TemporaryDirectory() as out:
        cmd = [args.vllm_python, str(ROOT / "benchmarks" / "vllm_cli.py"),
               "--backend", "openai", "--base-url", server.url, "--endpoint", "/v1/completions",
               "--model", "bench", "--tokenizer", server.model_dir,
               "--dataset-name", "random", "--random-input-len", str(args.input_len),
               "--random-output-len", str(args.output_len), "--ignore-eos",
               "--num-prompts", str(requests), "--seed", str(seed),
               "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
               "--disable-tqdm", "--save-result", "--save-detailed", "--result-dir", out,
               "--result-filename", "result.json"]
        if concurrency is not None:
            cmd += ["--max-concurrency", str(concurrency)]
        cmd += ["--request-rate", "inf" if rate is None else f"{rate:.4f}",
                "--burstiness", str(args.burstiness)]
        started = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.run_timeout)
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"vllm bench serve failed against {server.name}")
        result = json.loads((Path(out) / "result.json").read_text())
    keep = ("completed", "failed", "duration", "request_throughput", "output_throughput",
            "total_token_throughput", "median_ttft_ms", "p90_ttft_ms", "p99_ttft_ms",
            "mean_ttft_ms", "median_tpot_ms", "median_itl_ms", "p99_itl_ms", "median_e2el_ms")
    summary = {k: result.get(k) for k in keep}
    errors = [e for e in result.get("errors") or () if e]
    if errors:  # why requests failed (the first few distinct reasons)
        summary["errors"] = list(dict.fromkeys(str(e)[:300] for e in errors))[:3]
    summary.update(requests=requests, concurrency=concurrency, request_rate=rate, seed=seed,
                   burstiness=args.burstiness if rate is not None else None,
                   wall_s=round(time.monotonic() - started, 1),
                   total_output_tokens=result.get("total_output_tokens"))
    if rate is not None and summary["request_throughput"]:
        summary["served_share"] = summary["request_throughput"] / rate
    return summary


def run_phases(servers: list[Server], args: argparse.Namespace, round_index: int) -> dict:
    """One round: every phase on every server (the order of the servers alternating by round);
    each phase of each round draws prompts of its own, the same for every server."""
    out: dict[str, dict] = {s.name: {} for s in servers}
    for k, phase in enumerate(args.phases):
        seed = args.seed + 100 * round_index + k
        for s in (servers[::-1] if round_index % 2 == 1 else servers):
            if phase == "unloaded":
                r = bench(s, args, requests=args.unloaded_requests, concurrency=1, seed=seed)
            elif phase == "capacity":
                r = bench(s, args, requests=args.capacity_requests, concurrency=args.concurrency,
                          seed=seed)
            else:
                capacity = out[s.name]["capacity"]["request_throughput"]
                rate = args.load * capacity
                r = bench(s, args, requests=max(16, round(rate * args.poisson_seconds)),
                          rate=rate, seed=seed)
                unloaded = out[s.name].get("unloaded", {}).get("median_ttft_ms")
                if unloaded:
                    r["ttft_p50_over_unloaded"] = r["median_ttft_ms"] / unloaded
            out[s.name][phase] = r
            print(f"[{s.name}] {phase}: {json.dumps(r)}", file=sys.stderr)
    return out


def run_throughput(servers: list[Server], args: argparse.Namespace) -> dict:
    runs: dict[str, list[dict]] = {s.name: [] for s in servers}
    for k in range(args.throughput_runs):
        order = servers if k % 2 == 0 else servers[::-1]  # alternate who goes first
        for s in order:
            r = bench(s, args, requests=args.throughput_requests, concurrency=args.concurrency,
                      seed=args.seed + 10_000 + k)
            runs[s.name].append(r)
            print(f"[{s.name}] throughput run {k + 1}: {r['output_throughput']:.0f} tok/s, "
                  f"{r['failed']} failed", file=sys.stderr)
    base = servers[0].name
    ratios = {s.name: [r["output_throughput"] / b["output_throughput"]
                       for r, b in zip(runs[s.name], runs[base])] for s in servers[1:]}
    return {"runs": runs, "ratio_to": base, "ratios": ratios,
            "median_ratio": {k: statistics.median(v) for k, v in ratios.items()}}


def summarize(rounds: list[dict]) -> dict:
    """Per server and phase: the median over rounds of the headline figures, and their range."""
    keys = ("median_ttft_ms", "request_throughput", "output_throughput", "served_share",
            "ttft_p50_over_unloaded", "failed", "median_itl_ms")
    out: dict = {}
    for name in rounds[0] if rounds else {}:
        for phase in rounds[0][name]:
            for key in keys:
                values = [r[name][phase].get(key) for r in rounds]
                values = [v for v in values if v is not None]
                if values:
                    out.setdefault(name, {}).setdefault(phase, {})[key] = {
                        "median": statistics.median(values), "min": min(values),
                        "max": max(values)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model directory or test:PRESET")
    ap.add_argument("--server", action="append", required=True, help="NAME=KIND (see above)")
    ap.add_argument("-e", "--engine-option", action="append", default=[],
                    help="ENGINE:key=value for unillm servers of that engine, or "
                         "NAME:key=value for the server of that name")
    ap.add_argument("--vllm-arg", action="append", default=[],
                    help="an extra argument for vLLM's server (repeat; e.g. --vllm-arg=--enforce-eager); "
                         "give unillm's vllm engine the same setting (-e vllm:enforce_eager=true) "
                         "so that both run the same vLLM configuration")
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="an extra `unillm serve` argument (repeat; e.g. --serve-arg=--max-batch-size=64)")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help="comma-separated among unloaded,capacity,poisson; empty for none")
    ap.add_argument("--input-len", type=int, default=32)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--unloaded-requests", type=int, default=32)
    ap.add_argument("--capacity-requests", type=int, default=256)
    ap.add_argument("--load", type=float, default=0.7, help="Poisson rate / capacity")
    ap.add_argument("--burstiness", type=float, default=1.0)
    ap.add_argument("--poisson-seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the phases this many times, alternating which server goes first")
    ap.add_argument("--throughput-runs", type=int, default=0)
    ap.add_argument("--throughput-requests", type=int, default=1024)
    ap.add_argument("--llama-parallel", type=int, default=64, help="llama-server --parallel")
    ap.add_argument("--llama-threads", type=int, default=2)
    ap.add_argument("--llama-ctx-per-slot", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0,
                    help="the first run's prompts; later runs add to it (see --repeat-prompts)")
    ap.add_argument("--repeat-prompts", action="store_true",
                    help="every run sends --seed's prompts, so servers with a prompt cache "
                         "(llama-server's slots, vLLM's prefix cache) answer later runs from it")
    ap.add_argument("--run-timeout", type=float, default=1800)
    ap.add_argument("--vllm-python", default=str(Path(sys.executable).parents[1].parent
                                                  / ".venv-vllm" / "bin" / "python"))
    ap.add_argument("--out", help="write the results here (JSON)")
    args = ap.parse_args()
    args.phases = [p for p in args.phases.split(",") if p]
    # SIGTERM runs the clean-up below too: the servers live in their own sessions.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from unillm.testing import resolve_model

    model_dir = resolve_model(args.model) if args.model.startswith("test:") else args.model
    servers = [Server(*spec.split("=", 1), args, model_dir) for spec in args.server]
    report: dict = {"model": args.model, "model_dir": str(model_dir), "argv": sys.argv[1:],
                    "load_average_before": load_average(), "cpus": os.cpu_count()}
    try:
        for s in servers:
            s.start()
        report["servers"] = {s.name: {"kind": s.kind, **s.started_as} for s in servers}
        for s in servers:
            s.wait()
        report["rounds"] = [run_phases(servers, args, k)
                            for k in range(args.rounds)]
        report["summary"] = summarize(report["rounds"])
        if args.throughput_runs:
            report["throughput"] = run_throughput(servers, args)
    finally:
        for s in servers:
            s.stop()
    report["load_average_after"] = load_average()
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
