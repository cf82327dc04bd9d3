"""lm-evaluation-harness on unillm, on local data (no hub): the shipped multiple-choice and
generate_until tasks through `UnillmLM` (Python), `unillm eval` (the command line) and lm-eval's
own local-completions model against `unillm serve`; every float32 engine gets the same answers
and the same accuracies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import unillm
from unillm.testing import build_test_model

from ..conftest import require_engine

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install 'unillm[eval]')")

import unillm.eval as ueval  # noqa: E402

TASKS = ["unillm_mc", "unillm_gen"]
FLOAT32 = {
    "ctranslate2": {"compute_type": "float32"},
    "llamacpp": {"quantization": "f32", "kv_cache_type": "f32"},
}


def evaluate(model, **kwargs):
    ueval.register()
    return lm_eval.simple_evaluate(model=model, tasks=TASKS, task_manager=ueval.task_manager(),
                                   log_samples=True, **kwargs)


def answers(result) -> dict:
    """Per task and document: the model's raw answers (loglikelihoods, generated text)."""
    out = {}
    for task, samples in result["samples"].items():
        for s in samples:
            out[(task, s["doc_id"])] = [r[0] for r in s["resps"]]
    return out


def metrics(result) -> dict:
    return {task: {k: v for k, v in figures.items() if "stderr" not in k and "," in k}
            for task, figures in result["results"].items()}


def assert_same(result, baseline, tolerance=1e-3):
    assert metrics(result) == metrics(baseline)
    ours, theirs = answers(result), answers(baseline)
    assert ours.keys() == theirs.keys()
    for key, resps in ours.items():
        for a, b in zip(resps, theirs[key]):
            if isinstance(a, str):  # generate_until: the same text
                assert a == b, key
            else:  # loglikelihood: (logprob, is_greedy)
                assert a[0] == pytest.approx(b[0], abs=tolerance) and a[1] == b[1], key


@pytest.fixture(scope="module")
def baseline(hf_generator):
    """transformers in float32, through a loaded Generator."""
    return evaluate(ueval.UnillmLM(generator=hf_generator, batch_size=8))


def test_the_tasks_run_on_local_data_and_score_as_the_library(baseline, hf_generator):
    assert set(baseline["results"]) == set(TASKS)
    assert baseline["results"]["unillm_mc"]["sample_len"] == 20
    assert baseline["results"]["unillm_gen"]["sample_len"] == 10
    mc = baseline["samples"]["unillm_mc"][0]
    pairs = [tuple(arg) for arg in mc["arguments"]]
    expected = hf_generator.score(pairs)
    assert [r[0][0] for r in mc["resps"]] == pytest.approx([s.logprob for s in expected])
    gen = baseline["samples"]["unillm_gen"][0]
    context, kwargs = gen["arguments"][0]
    out = hf_generator.generate(context, {"max_tokens": kwargs["max_gen_toks"], "stop": ["\n"],
                                          "temperature": 0})
    assert gen["resps"][0][0] == out.text


@pytest.mark.parametrize("engine", sorted(FLOAT32))
def test_float32_engines_get_the_same_answers(baseline, tiny_llama, engine):
    require_engine(engine)
    result = evaluate("unillm", model_args={"engine": engine, "model": tiny_llama,
                                            **FLOAT32[engine]}, batch_size=8)
    assert_same(result, baseline)


def test_unillm_eval_on_the_command_line(baseline, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "unillm", "eval", "--engine", "transformers", "--model",
         "test:llama-tiny", "-o", "dtype=float32", "--tasks", ",".join(TASKS),
         "--batch_size", "8", "--output_path", str(tmp_path), "--log_samples"],
        capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "unillm_mc" in run.stdout and "acc" in run.stdout
    (results,) = tmp_path.rglob("results_*.json")
    written = json.loads(results.read_text())
    assert metrics(written) == metrics(baseline)
    assert written["config"]["model"] == "unillm"


def test_unillm_eval_refuses_lm_evals_own_model_arguments():
    run = subprocess.run([sys.executable, "-m", "unillm", "eval", "--engine", "transformers",
                          "--model_args", "pretrained=x", "--tasks", "unillm_mc"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "--engine/--model/--engine-option" in run.stderr


def test_lm_evals_local_completions_against_unillm_serve(baseline, hf_generator, tiny_llama):
    """lm-eval's own OpenAI-completions model, pointed at `unillm serve`: the same answers.
    (`add_bos_token=True`: unillm, like lm-eval's HF model, starts prompts with the
    tokenizer's BOS.)"""
    from ..serve.conftest import MODEL, running_server

    with running_server(hf_generator) as live:
        result = evaluate("local-completions", model_args={
            "base_url": f"{live.v1}/completions", "model": MODEL, "tokenizer_backend":
            "huggingface", "tokenizer": tiny_llama, "add_bos_token": True, "max_length": 2048,
            "num_concurrent": 1, "max_retries": 1})
    assert_same(result, baseline, tolerance=1e-4)


def test_a_model_without_start_token_and_rolling_loglikelihood(tmp_path):
    """gpt2-tiny (no BOS) through UnillmLM: loglikelihood_rolling is lm-eval's rolling score."""
    require_engine("transformers")
    with unillm.load("transformers", str(build_test_model("gpt2-tiny")), dtype="float32") as gen:
        from lm_eval.api.instance import Instance

        lm = ueval.UnillmLM(generator=gen)
        texts = ["hello world " * 40, "A short one."]
        got = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (t,), i)
                                        for i, t in enumerate(texts)])
        assert got == [s.logprob for s in gen.score_rolling(texts)]


def test_unknown_generation_kwargs_are_named(hf_generator):
    from lm_eval.api.instance import Instance

    lm = ueval.UnillmLM(generator=hf_generator)
    with pytest.raises(unillm.InvalidParameterError, match="num_beams"):
        lm.generate_until([Instance("generate_until", {}, ("Hi", {"num_beams": 4}), 0)])


def test_shipped_task_data_exists():
    assert (Path(ueval.TASKS_DIR) / "mc.jsonl").is_file()
    assert (Path(ueval.TASKS_DIR) / "gen.jsonl").is_file()


def test_vllm_through_unillm_serve_gets_the_same_answers(baseline, tiny_llama, tmp_path):
    """vLLM lives in its own environment (UNILLM_VLLM_PYTHON), without lm-eval: `unillm serve`
    runs it there, and lm-eval's local-completions evaluates it from here."""
    import os

    import httpx

    from ..servers import free_port, stop_process, wait_until_ready

    python = os.environ.get("UNILLM_VLLM_PYTHON")
    if not python:
        pytest.skip("vLLM runs in its own environment: set UNILLM_VLLM_PYTHON to run this test")
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [python, "-m", "unillm", "serve", "--engine", "vllm", "--model", tiny_llama,
             "--port", str(port), "--served-model-name", "tiny", "-o", "dtype=float32",
             "-o", "enforce_eager=true"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "UNILLM_API_KEY": ""})
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/health", 300, alive=lambda: proc.poll() is None)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=30).status_code == 200
        result = evaluate("local-completions", model_args={
            "base_url": f"http://127.0.0.1:{port}/v1/completions", "model": "tiny",
            "tokenizer_backend": "huggingface", "tokenizer": tiny_llama, "add_bos_token": True,
            "max_length": 2048, "num_concurrent": 1, "max_retries": 1})
    except Exception:
        print(log.read_text()[-3000:])
        raise
    finally:
        stop_process(proc)
    assert_same(result, baseline)
