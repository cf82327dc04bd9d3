"""`bench serve`: a client sweep against any OpenAI-compatible server.

For each concurrency level the client keeps at most that many streaming requests in flight
(all submitted at once, or arriving at `rate` requests/s) and times each request as vLLM's
serving benchmark does: TTFT at the first content chunk, ITL between chunks (a server that
sends k tokens in one chunk gives one gap; METRICS.md), TPOT from the server's own token count
(``usage``). Goodput counts the requests that met every given limit.

Arrivals, as `vllm bench serve` makes them: the gaps between requests are drawn from a gamma
distribution of shape `burstiness` and mean 1/rate (1 = a Poisson process; below 1 burstier,
above 1 more regular). With `rates`, the sweep is over offered load instead: one point per
rate (at most the largest concurrency level in flight), and the run's `saturation` names the
offered rate where the server stopped keeping up (served < `KEEP_UP` x offered) and the most it
served: where latency turns from flat to climbing.

The client runs on the same machine as a loopback server and shares its CPUs: on a small
machine that is part of what is measured, and the result's `machine` says how small.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..timing import RunTiming, Timing, now
from .prompts import latency_prompts, prompt_set_name, token_prompts
from .results import new_result, record, set_statuses, summarize
from .runner import NullReporter, Reporter
from ..backends.http import DONE, aparse_events

ENDPOINTS = ("completions", "chat")
KEEP_UP = 0.9
"""A server keeps up with an offered rate while it serves at least this share of it."""


def arrival_gaps(count: int, rate: float | None, burstiness: float,
                 rng: random.Random) -> list[float]:
    """Seconds to wait before each request after the first (`count` - 1 of them): none
    without a rate (all at once); else gamma(shape=burstiness, scale=1/(rate*burstiness)),
    vLLM's `--burstiness`, whose mean is 1/rate whatever the shape."""
    if not rate:
        return [0.0] * max(count - 1, 0)
    return [rng.gammavariate(burstiness, 1.0 / (rate * burstiness)) for _ in range(count - 1)]


def saturation(points: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Where a rate sweep saturates: the lowest offered rate served below `KEEP_UP` of the
    rate the requests really arrived at (`arrival_rate`: a short run of random gaps is not
    exactly the nominal rate), None if the server kept up with every rate; the highest rate it
    kept up with; and the most requests/s it served at any rate."""
    rated = sorted((p for p in points if p.get("offered_rate")), key=lambda p: p["offered_rate"])
    if not rated:
        return None
    served = [((p.get("run") or {}).get("request_throughput") or 0.0) for p in rated]
    arrived = [p.get("arrival_rate") or p["offered_rate"] for p in rated]
    ok = [s >= KEEP_UP * a for s, a in zip(served, arrived)]
    kept = [p["offered_rate"] for p, good in zip(rated, ok) if good]
    lost = [p["offered_rate"] for p, good in zip(rated, ok) if not good]
    return {"saturated_at": lost[0] if lost else None,
            "highest_kept_up": max(kept) if kept else None,
            "max_served": max(served), "keep_up": KEEP_UP}


@dataclass(frozen=True)
class SLO:
    """Limits a request must meet to count towards goodput (seconds; None = no limit)."""

    ttft: float | None = None
    tpot: float | None = None
    e2e: float | None = None

    def met(self, t: Timing) -> bool:
        for name in ("ttft", "tpot", "e2e"):
            limit = getattr(self, name)
            if limit is None:
                continue
            value = getattr(t, name)
            if value is None or value > limit:
                return False
        return True

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.ttft, self.tpot, self.e2e))

    def to_dict(self) -> dict[str, float | None]:
        return {"ttft": self.ttft, "tpot": self.tpot, "e2e": self.e2e}


@dataclass
class ObservedRequest:
    """One request as the client saw it."""

    timing: Timing | None
    finish_reason: str | None = None
    error: str | None = None


def _body(endpoint: str, model: str, prompt: str, max_tokens: int, ignore_eos: bool,
          extra: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
        "stream_options": {"include_usage": True},
    }
    if endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if ignore_eos:
        body["ignore_eos"] = True  # vLLM's extension, also accepted by unillm serve
    body.update(extra)
    return body


def _content(choice: Mapping[str, Any]) -> str:
    if "text" in choice:
        return choice.get("text") or ""
    delta = choice.get("delta") or {}
    return delta.get("content") or ""


async def send_request(client: Any, url: str, body: Mapping[str, Any]) -> ObservedRequest:
    """POST one streaming request and time every content chunk."""
    start = now()
    times: list[float] = []
    usage: Mapping[str, Any] = {}
    finish = None
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode("utf-8", "replace")
                return ObservedRequest(None, error=f"HTTP {response.status_code}: {text[:300]}")
            async for data in aparse_events(response.aiter_lines()):
                if data.strip() == DONE:
                    break
                event = json.loads(data)
                if event.get("error"):
                    return ObservedRequest(None, error=f"server error: {event['error']}")
                for choice in event.get("choices") or ():
                    if _content(choice):
                        times.append(now())
                    finish = choice.get("finish_reason") or finish
                if event.get("usage"):
                    usage = event["usage"]
    except Exception as exc:  # noqa: BLE001 - a failed request is a result, not a crash
        return ObservedRequest(None, error=f"{type(exc).__name__}: {exc}")
    if not times:
        return ObservedRequest(None, finish, error="the stream ended without any content")
    rel = tuple(t - start for t in times)
    output_tokens = usage.get("completion_tokens") or len(rel)
    timing = Timing(rel[-1], rel, usage.get("prompt_tokens"), int(output_tokens), "stream")
    return ObservedRequest(timing, finish)


async def _level(client: Any, url: str, bodies: Sequence[Mapping[str, Any]], concurrency: int,
                 gaps: Sequence[float],
                 advance: Callable[[int], None]) -> tuple[list[ObservedRequest], float]:
    """Send every body with at most `concurrency` in flight, the next one `gaps[i]` seconds
    after the previous (arrival times are kept even when the server falls behind); returns
    replies and wall time."""
    gate = asyncio.Semaphore(concurrency)
    replies: list[ObservedRequest | None] = [None] * len(bodies)

    async def one(i: int) -> None:
        async with gate:
            replies[i] = await send_request(client, url, bodies[i])
        advance(1)

    start = now()
    due = start
    tasks = []
    for i in range(len(bodies)):
        tasks.append(asyncio.create_task(one(i)))
        if i < len(gaps) and gaps[i] > 0:
            due += gaps[i]
            await asyncio.sleep(max(0.0, due - now()))
    await asyncio.gather(*tasks)
    return [r for r in replies if r is not None], now() - start


def _point(replies: Sequence[ObservedRequest], wall: float, concurrency: int,
           rate: float | None, expected: int | None, slo: SLO,
           gaps: Sequence[float] = ()) -> dict[str, Any]:
    ok = [(i, r) for i, r in enumerate(replies) if r.timing is not None]
    timings = [r.timing for _, r in ok]
    prompt_counts = [t.prompt_tokens for t in timings]
    run = RunTiming(
        wall=wall, requests=len(ok),
        prompt_tokens=None if any(p is None for p in prompt_counts) else sum(prompt_counts),  # type: ignore[arg-type]
        output_tokens=sum(t.output_tokens for t in timings),
    )
    mismatches = [
        {"index": i, "expected": expected, "output_tokens": r.timing.output_tokens,
         "finish_reason": r.finish_reason}
        for i, r in ok if expected is not None and r.timing.output_tokens != expected
    ]
    errors = [{"index": i, "error": r.error} for i, r in enumerate(replies) if r.error]
    point: dict[str, Any] = {
        "concurrency": concurrency, "rate": rate, "requests": len(replies),
        "completed": len(ok), "failed": len(errors), "errors": errors[:20],
        "expected_output_tokens": expected, "mismatches": mismatches,
        "run": run.to_dict(), "metrics": summarize(timings),
        "records": [record(r.timing, index=i, finish_reason=r.finish_reason) for i, r in ok],
    }
    if gaps and rate:
        span = sum(gaps)
        arrival = len(gaps) / span if span > 0 else rate
        point.update(offered_rate=rate, arrival_rate=arrival,
                     served_share=(run.request_throughput or 0.0) / arrival)
    if slo.active:
        good = sum(1 for t in timings if slo.met(t))
        point["good_requests"] = good
        point["goodput"] = good / wall if wall > 0 else None
    return point


async def _models(client: Any, base: str) -> list[str]:
    response = await client.get(f"{base}/models")
    response.raise_for_status()
    return [m["id"] for m in response.json().get("data", [])]


def _base(url: str) -> str:
    """``http://host:8000`` or ``.../v1`` -> the ``/v1`` base."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


def serve_prompts(count: int, input_len: int | None = None, tokenizer: str | None = None,
                  seed: int = 0) -> list[str]:
    """`count` prompt texts: the shipped prompt set cycled, or synthetic prompts of
    `input_len` tokens of `tokenizer` (a local Hugging Face tokenizer directory)."""
    if input_len is None:
        base = latency_prompts()
        return [base[i % len(base)] for i in range(count)]
    if tokenizer is None:
        raise ValueError("input_len needs a tokenizer (a local model directory) to count tokens")
    from ..tokenizer import HFTokenizer

    tok = HFTokenizer.from_pretrained(tokenizer)
    return [tok.decode(ids) for ids in token_prompts(tok, [input_len] * count, seed)]


def _plan(concurrency: Sequence[int], rate: float | None,
          rates: Sequence[float] | None) -> list[tuple[int, float | None]]:
    """The points of a sweep: (concurrency, rate) each."""
    if rates:
        return [(max(concurrency), r) for r in rates]
    return [(level, rate) for level in concurrency]


async def _sweep_one(url: str, model: str | None, label: str, *, concurrency: Sequence[int],
                     num_prompts: int | None, max_tokens: int, ignore_eos: bool, rate: float | None,
                     slo: SLO, endpoint: str, prompts: Sequence[str], warmup: int,
                     extra: Mapping[str, Any], seed: int, timeout: float,
                     reporter: Reporter, rates: Sequence[float] | None = None,
                     burstiness: float = 1.0) -> dict[str, Any]:
    import httpx

    base = _base(url)
    path = f"{base}/chat/completions" if endpoint == "chat" else f"{base}/completions"
    run: dict[str, Any] = {
        "label": label, "engine": "http", "options": {"url": url, "endpoint": endpoint},
        "model": model, "status": "ok", "error": None, "load_s": None, "engine_info": None,
        "peak_memory": None, "points": [],
    }
    limits = httpx.Limits(max_connections=max(concurrency) + 8,
                          max_keepalive_connections=max(concurrency) + 8)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout)) as client:
        try:
            models = await _models(client, base)
            run["engine_info"] = {"models": models}
            if model is None:
                if not models:
                    raise ValueError(f"{base}/models lists no model: pass --served-model")
                model = models[0]
                run["model"] = model
            for i in range(warmup):
                body = _body(endpoint, model, prompts[i % len(prompts)], max_tokens, ignore_eos, extra)
                reply = await send_request(client, path, body)
                if reply.error:
                    raise RuntimeError(f"warm-up request failed: {reply.error}")
        except Exception as exc:  # noqa: BLE001 - the server's failure is this run's result
            run["status"] = "error"
            run["error"] = f"{type(exc).__name__}: {exc}"
            reporter.message(f"{label}: failed: {run['error']}")
            return run
        rng = random.Random(seed)
        for level, level_rate in _plan(concurrency, rate, rates):
            if rates:
                count = num_prompts or max(32, round(10 * level_rate))
                name = f"{label} {level_rate:g} req/s"
            else:
                count = num_prompts or max(2 * level, 16)
                name = f"{label} c={level}"
            bodies = [_body(endpoint, model, prompts[i % len(prompts)], max_tokens, ignore_eos, extra)
                      for i in range(count)]
            gaps = arrival_gaps(count, level_rate, burstiness, rng)
            replies, wall = await _level(client, path, bodies, level, gaps,
                                         reporter.task(name, count))
            run["points"].append(_point(replies, wall, level, level_rate,
                                        max_tokens if ignore_eos else None, slo,
                                        gaps=gaps if rates else ()))
    if rates:
        run["saturation"] = saturation(run["points"])
    if any(p["failed"] for p in run["points"]):
        run["status"] = "error"
        run["error"] = f"{sum(p['failed'] for p in run['points'])} requests failed (see errors)"
    return run


def run_serve(urls: Sequence[str], **kwargs: Any) -> dict[str, Any]:
    """`arun_serve` from synchronous code (it runs its own event loop)."""
    return asyncio.run(arun_serve(urls, **kwargs))


async def arun_serve(
    urls: Sequence[str],
    *,
    model: str | None = None,
    labels: Sequence[str] | None = None,
    concurrency: Sequence[int] = (1, 8, 32, 128, 256),
    num_prompts: int | None = None,
    max_tokens: int = 128,
    ignore_eos: bool = True,
    rate: float | None = None,
    rates: Sequence[float] | None = None,
    burstiness: float = 1.0,
    slo: SLO | None = None,
    endpoint: str = "completions",
    input_len: int | None = None,
    tokenizer: str | None = None,
    warmup: int = 2,
    extra: Mapping[str, Any] | None = None,
    seed: int = 0,
    timeout: float = 600.0,
    reporter: Reporter | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Sweep each server over the concurrency levels and return the result.

    `num_prompts` requests per level (default: twice the level, at least 16); `rate` spaces
    arrivals (gamma gaps of shape `burstiness`: 1 = Poisson); `rates` sweeps offered load
    instead of concurrency (one point per rate, `num_prompts` each, default 10 s of arrivals
    and at least 32); `ignore_eos` asks for exactly `max_tokens` tokens (a vLLM extension that
    unillm's server honours) and checks the server's token count against it.
    """
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint = {endpoint!r} is not allowed: one of {', '.join(ENDPOINTS)}")
    if not concurrency or min(concurrency) < 1:
        raise ValueError("every concurrency level must be >= 1")
    if rate is not None and rate <= 0:
        raise ValueError(f"rate = {rate} is not allowed: rate > 0 (requests/s), or leave it out")
    if rates is not None:
        if rate is not None:
            raise ValueError("give rate (one arrival rate) or rates (a sweep), not both")
        if not rates or min(rates) <= 0:
            raise ValueError(f"rates = {list(rates)} is not allowed: each > 0 (requests/s)")
        rates = sorted(dict.fromkeys(float(r) for r in rates))
    if not burstiness > 0:
        raise ValueError(f"burstiness = {burstiness} is not allowed: burstiness > 0 "
                         "(1 = Poisson arrivals)")
    labels = list(labels or urls)
    if len(labels) != len(urls):
        raise ValueError("give one label per url")
    slo = slo or SLO()
    reporter = reporter or NullReporter()
    levels = list(dict.fromkeys(int(c) for c in concurrency))
    longest = max(num_prompts or 0, max(2 * max(levels), 16))
    prompts = serve_prompts(longest, input_len, tokenizer, seed)
    parameters = {
        "urls": list(urls), "model": model, "concurrency": levels, "num_prompts": num_prompts,
        "max_tokens": max_tokens, "ignore_eos": ignore_eos, "rate": rate, "rates": rates,
        "burstiness": burstiness, "slo": slo.to_dict()
        if slo.active else None, "endpoint": endpoint, "warmup": warmup, "seed": seed,
        "prompts": f"synthetic, {input_len} tokens" if input_len else prompt_set_name(),
        "extra": dict(extra or {}), "temperature": 0.0,
    }
    result = new_result("serve", parameters, command)
    for url, label in zip(urls, labels):
        run = await _sweep_one(
            url, model, label, concurrency=levels, num_prompts=num_prompts, max_tokens=max_tokens,
            ignore_eos=ignore_eos, rate=rate, slo=slo, endpoint=endpoint, prompts=prompts,
            warmup=warmup, extra=extra or {}, seed=seed, timeout=timeout, reporter=reporter,
            rates=rates, burstiness=burstiness,
        )
        result["runs"].append(run)
    return set_statuses(result)
