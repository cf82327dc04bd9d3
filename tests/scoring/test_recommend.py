"""`unillm recommend` and `unillm.load("auto", ...)`: the fastest candidate whose perplexity
stays within the bound of float32, measured once and then read from the cache."""

from __future__ import annotations

import subprocess
import sys

import pytest

import unillm
import unillm.recommend as rec
from unillm.bench.spec import EngineSpec

from ..conftest import require_engine

ENGINES = "ctranslate2:compute_type=float32:label=ct2-f32,ctranslate2:compute_type=int8:label=ct2-int8"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(rec, "cache_root", lambda: tmp_path)
    return tmp_path / "recommend"


@pytest.fixture
def measured(cache, monkeypatch):
    """One measurement, counted: later calls must come from the cache."""
    require_engine("transformers")
    require_engine("ctranslate2")
    from unillm.bench import quality

    calls = []
    real = quality.run_quality

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **{**kwargs, "isolate": False})

    monkeypatch.setattr(quality, "run_quality", counting)
    return calls


def test_the_fastest_qualifying_candidate_wins_and_is_cached(measured, cache):
    choice = rec.recommend("test:llama-tiny", engines=ENGINES, prompts=1, max_tokens=8)
    rows = {r["label"]: r for r in choice.candidates}
    assert set(rows) == {"transformers-float32", "ct2-f32", "ct2-int8"}
    assert rows["transformers-float32"]["qualifies"] and rows["ct2-f32"]["qualifies"]
    assert abs(rows["ct2-int8"]["perplexity_gap"]) > 0.01  # int8 on a random model: > 1 %
    assert not rows["ct2-int8"]["qualifies"]
    fastest = max((r for r in rows.values() if r["qualifies"]), key=lambda r: r["tokens_per_s"])
    assert choice.label == fastest["label"]
    assert choice.load_line("M").startswith(f"unillm.load({choice.engine!r}, 'M'")
    assert len(measured) == 1 and list(cache.glob("quality-*.json"))
    again = rec.recommend("test:llama-tiny", engines=ENGINES, prompts=1, max_tokens=8)
    assert len(measured) == 1 and again.label == choice.label  # from the cache
    loose = rec.recommend("test:llama-tiny", engines=ENGINES, prompts=1, max_tokens=8,
                          max_gap=10.0)
    assert {r["label"] for r in loose.candidates if r["qualifies"]} == set(rows)


def test_load_auto_loads_the_recommendation(measured):
    gen = unillm.load("auto", "test:llama-tiny", engines=ENGINES, max_gap=0.01)
    with gen:
        choice = rec.recommend("test:llama-tiny", engines=ENGINES)
        assert gen.engine_name == choice.engine
        assert gen.generate("Hello", {"max_tokens": 3, "temperature": 0}).text is not None


def test_bad_objective_and_default_candidates(cache):
    with pytest.raises(unillm.InvalidParameterError, match="objective"):
        rec.recommend("test:llama-tiny", objective="cheapest")
    specs = rec.candidates()
    assert all(isinstance(s, EngineSpec) for s in specs)
    installed = {i.name for i in unillm.engines() if i.status == "installed"}
    assert {s.engine for s in specs} <= installed


def test_the_command_prints_the_load_line():
    require_engine("ctranslate2")
    run = subprocess.run(
        [sys.executable, "-m", "unillm", "recommend", "--model", "test:llama-tiny",
         "--engines", "ctranslate2:compute_type=float32:label=ct2-f32", "--max-gap", "0.01"],
        capture_output=True, text=True, timeout=900)  # cached in <unillm cache>/recommend
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "gen = unillm.load(" in run.stdout and "qualifies" in run.stdout
