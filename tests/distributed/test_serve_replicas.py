"""`unillm serve --replicas N` goes through the same Ray replicas as unillm.load(replicas=N)."""

from __future__ import annotations

import httpx
import pytest

import unillm

from ..conftest import require_engine

pytest.importorskip("fastapi", reason="unillm serve needs the serve extra")
from ..serve.conftest import serve_process  # noqa: E402


def test_serve_with_replicas_answers_like_the_local_engine(tiny_llama, hf_generator):
    require_engine("transformers")
    prompts = ["The quick brown fox", "def main():", "Bonjour", "x = ["]
    with serve_process(tiny_llama, "--replicas", "2", "-o", "dtype=float32",
                       "-o", "num_cpus=0.25", timeout=300) as (_, url):
        served = []
        for prompt in prompts:
            r = httpx.post(f"{url}/v1/completions", timeout=120, json={
                "model": "tiny", "prompt": prompt, "max_tokens": 12, "temperature": 0})
            assert r.status_code == 200, r.text
            served.append(r.json()["choices"][0]["text"])
    local = hf_generator.generate(prompts, unillm.SamplingParams(max_tokens=12, temperature=0))
    assert served == [c.text for c in local]
