"""`unillm tune`: the search space comes from the registry, each trial is a measured run, and
the best settings load straight back into `unillm.load`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import unillm
from unillm import Knob
from unillm.backends.transformers import TransformersEngine, TransformersOptions
from unillm.bench.tune import Workload, load_tuned, run_tune, search_space

from ..conftest import require_engine


def test_tune_command_tiny_budget_and_load_the_best_back(tmp_path):
    require_engine("transformers")
    out = subprocess.run(
        [sys.executable, "-m", "unillm.cli", "tune", "--engine", "transformers",
         "--model", "test:llama-tiny", "--objective", "latency", "--trials", "2",
         "--confirm", "2", "--prompts", "1", "--max-tokens", "8",
         "--knobs", "attn_implementation,threads", "--out", str(tmp_path), "--name", "t"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "improvement over the defaults" in out.stdout and "unillm.load('transformers'" in out.stdout
    result = json.loads((tmp_path / "t.json").read_text())
    assert result["kind"] == "tune" and result["ok"]
    assert set(result["parameters"]["knobs"]) == {"attn_implementation", "threads"}
    assert len(result["trials"]) == 2 and all(t["value"] > 0 for t in result["trials"])
    assert result["default"]["options"] == {} and result["default"]["value"] > 0
    conf = result["confirmation"]
    assert len(conf["default"]) == len(conf["best"]) == 2
    assert conf["improvement"] == pytest.approx(conf["default_median"] / conf["best_median"] - 1)
    best = result["best"]["options"]
    assert best["attn_implementation"] in ("eager", "sdpa") and 1 <= best["threads"] <= os.cpu_count()
    for suffix in (".csv", "-trials.png", "-confirm.png"):
        assert (tmp_path / f"t{suffix}").stat().st_size > 0
    # the search's best is recommended only when the confirmation says it beats the defaults
    assert result["recommended"] == ("tuned" if conf["improvement"] > 0 else "defaults")
    chosen = result["load"]["options"]
    assert chosen == (best if result["recommended"] == "tuned" else {})

    with load_tuned(str(tmp_path / "t.json")) as gen:       # the recommended settings, straight back
        assert {k: gen.info["options"][k] for k in chosen} == chosen
        assert gen.generate("Hi", unillm.SamplingParams(max_tokens=3, temperature=0,
                                                        ignore_eos=True)).timing.output_tokens == 3
    with unillm.load("transformers", gen.model, **chosen) as again:
        assert {k: again.info["options"][k] for k in chosen} == chosen


class _KnobOptions(TransformersOptions):
    pass


class _PluginEngine(TransformersEngine):
    """A third-party engine: transformers underneath, its own declared knobs."""

    Options = _KnobOptions
    tunables = {"max_batch_size": Knob("int", 1, 4), "dtype": Knob("choice", choices=("float32",))}


class _Plugin:
    @unillm.hookimpl
    def unillm_register_engines(self, register):
        register("test-knobs", _PluginEngine, requires=("torch", "transformers"))


def _register():
    if "test-knobs" not in {i.name for i in unillm.engines()}:
        unillm.register_plugin(_Plugin(), name="test-knobs")


def test_a_plugin_gets_tune_for_free_from_its_declared_knobs():
    require_engine("transformers")
    _register()
    w = Workload("throughput", num_prompts=4, input_len=8, output_len=4)
    space = search_space("test-knobs", w)
    assert {k: scope for k, (_, scope) in space.items()} == {
        "max_batch_size": "load", "dtype": "load", "call.batch_size": "call"}
    assert "max_batch_size" not in search_space("test-knobs", w, fixed={"max_batch_size": 2})
    result = run_tune("test-knobs", "test:llama-tiny", objective="throughput", trials=2, confirm=1,
                      workload=w, isolate=False)
    assert [t["state"] for t in result["trials"]] == ["complete", "complete"]
    for t in result["trials"]:
        assert 1 <= t["options"]["max_batch_size"] <= 4 and 1 <= t["call"]["batch_size"] <= 4
    assert result["default"]["call"] == {"batch_size": 4}


def test_a_knob_that_is_not_an_option_is_a_clear_error():
    require_engine("transformers")

    class Bad(TransformersEngine):
        tunables = {"warp_speed": Knob("int", 1, 9)}

    class BadPlugin:
        @unillm.hookimpl
        def unillm_register_engines(self, register):
            register("test-bad-knob", Bad, requires=("torch",))

    if "test-bad-knob" not in {i.name for i in unillm.engines()}:
        unillm.register_plugin(BadPlugin(), name="test-bad-knob")
    with pytest.raises(unillm.UnillmError, match="warp_speed"):
        search_space("test-bad-knob", Workload("latency"))
    with pytest.raises(unillm.InvalidParameterError, match="knobs"):
        search_space("transformers", Workload("latency"), knobs=["nope"])
