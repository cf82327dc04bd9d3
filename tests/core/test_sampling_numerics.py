"""Every valid sampling value runs on every local engine and means what it says.

The float fields are drawn from their whole valid range, subnormals included, with the
extremes a fuzzer found (temperature 1e-233 was an inf/nan error on transformers, 1e-40 empty
text on CTranslate2, top_p 5e-324 a refusal by CTranslate2): the rule in `SamplingParams`
(`GREEDY_EPS`, `REPETITION_PENALTY_MIN`) must make each of them run, and a value that the rule
makes greedy must give exactly the greedy tokens.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unillm
from unillm import SamplingParams
from unillm.errors import UnsupportedParameterError
from unillm.params import GREEDY_EPS

from ..conftest import require_engine

EXTREMES = [5e-324, 1e-320, 1e-300, 1e-233, 1e-45, 1e-40, 1e-39, 1e-38, 1e-7, 9.99e-6, 1e-5]


def in_range(lo: float, hi: float, open_lo: bool = False) -> st.SearchStrategy[float]:
    edge = [v for v in EXTREMES + [lo, hi] if (v > lo if open_lo else v >= lo) and v <= hi]
    return st.one_of(
        st.sampled_from(edge),
        st.floats(min_value=lo, max_value=hi, exclude_min=open_lo, allow_subnormal=True),
    )


PARAMS = st.fixed_dictionaries({}, optional={
    "temperature": in_range(0.0, 100.0),
    "top_p": in_range(0.0, 1.0, open_lo=True),
    "min_p": in_range(0.0, 1.0),
    "repetition_penalty": in_range(0.0, 10.0, open_lo=True),
    "presence_penalty": in_range(-2.0, 2.0),
    "frequency_penalty": in_range(-2.0, 2.0),
    "seed": st.integers(0, 2**32 - 1),
})

ENGINES = {
    # target: (engine, its options, the server fixture an HTTP engine talks to)
    "transformers": ("transformers", {"dtype": "float32"}, None),
    "ctranslate2": ("ctranslate2", {}, None),
    "llamacpp": ("llamacpp", {}, None),
    "vllm": ("vllm", {"dtype": "float32"}, None),  # in .venv-vllm (scripts/test.d/vllm.sh)
    # HTTP engines get the values as SamplingParams made them (the rule runs before any
    # request is sent); a real server then has to honour what it received.
    "openai-llama-server": ("openai", {}, "llama_server"),
}
MAX_TOKENS = 4


@pytest.fixture(scope="module", params=sorted(ENGINES))
def engine_gen(request, tiny_llama):
    name, options, server = ENGINES[request.param]
    require_engine(name)
    model = tiny_llama
    if server is not None:
        model, server_options = request.getfixturevalue(server)(tiny_llama)
        options = {**server_options, **options}
    gen = unillm.load(name, model, **options)
    greedy = gen.generate("numbers", SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0,
                                                    ignore_eos=True))
    yield gen, greedy.samples[0]
    gen.close()


def test_tiny_values_are_greedy_in_the_params_themselves():
    for tiny in (5e-324, 1e-233, 1e-40, 9.99e-6):
        assert SamplingParams(temperature=tiny).is_greedy
        p = SamplingParams(temperature=0.7, top_p=tiny)
        assert p.is_greedy and p.top_p == 1.0
    assert not SamplingParams(temperature=GREEDY_EPS).is_greedy
    assert SamplingParams(repetition_penalty=5e-324).repetition_penalty == 1e-5
    assert SamplingParams(repetition_penalty=0.5).repetition_penalty == 0.5


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=PARAMS)
def test_every_valid_value_runs_and_greedy_means_greedy(engine_gen, values):
    gen, greedy = engine_gen
    params = SamplingParams(max_tokens=MAX_TOKENS, ignore_eos=True, **values)
    try:
        out = gen.generate("numbers", params)
    except UnsupportedParameterError:
        return  # the engine cannot honour the field at all (a 400 in the server), not a fault
    sample = out.samples[0]
    assert sample.finish_reason == "length" and sample.timing.output_tokens == MAX_TOKENS
    if gen.capabilities.token_ids:
        assert len(sample.token_ids) == MAX_TOKENS
        assert sample.text == gen.tokenizer.decode(sample.token_ids)
    greedy_means_greedy = params.is_greedy and params.repetition_penalty == 1.0 and not (
        params.presence_penalty or params.frequency_penalty)
    if greedy_means_greedy:  # text engines: the same text; token-id engines: the same ids
        assert (sample.text, sample.token_ids) == (greedy.text, greedy.token_ids)
