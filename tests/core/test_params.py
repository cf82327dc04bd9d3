"""SamplingParams: bounds, typed errors that name field/value/range, immutability."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import unillm
from unillm import SamplingParams
from unillm.params import GREEDY_EPS, REPETITION_PENALTY_MIN, SEED_MAX, TOP_K_MAX, parameter_table

# field -> (inclusive lower, inclusive upper, lower open?, is_int); None = unbounded
BOUNDS = {
    "max_tokens": (1, None, False, True),
    "temperature": (0.0, 100.0, False, False),
    "top_p": (0.0, 1.0, True, False),
    "top_k": (1, TOP_K_MAX, False, True),
    "min_p": (0.0, 1.0, False, False),
    "repetition_penalty": (0.0, 10.0, True, False),
    "presence_penalty": (-2.0, 2.0, False, False),
    "frequency_penalty": (-2.0, 2.0, False, False),
    "seed": (0, SEED_MAX, False, True),
    "n": (1, 128, False, True),
    "logprobs": (0, 20, False, True),
}


def inside(field, value) -> bool:
    lo, hi, open_lo, _ = BOUNDS[field]
    above = value > lo if open_lo else value >= lo
    return above and (hi is None or value <= hi)


numbers = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
)


def normalised(field, value):
    """What SamplingParams stores: tiny temperature/top_p are greedy, a tiny
    repetition_penalty is raised to its floor (the numerically safe rule)."""
    tiny = isinstance(value, float) and 0.0 < value < GREEDY_EPS
    if field == "temperature" and tiny:
        return 0.0
    if field == "top_p" and tiny:
        return 1.0
    if field == "repetition_penalty" and isinstance(value, float) and 0.0 < value < \
            REPETITION_PENALTY_MIN:
        return REPETITION_PENALTY_MIN
    return value


@given(field=st.sampled_from(sorted(BOUNDS)), value=numbers)
def test_every_numeric_field_accepts_exactly_its_range(field, value):
    is_int = BOUNDS[field][3]
    if is_int and isinstance(value, float):
        value = math.floor(value)
    valid = inside(field, value)
    if valid:
        p = SamplingParams(**{field: value})
        assert getattr(p, field) == normalised(field, value)
    else:
        with pytest.raises(unillm.InvalidParameterError) as info:
            SamplingParams(**{field: value})
        err = info.value
        assert err.field == field
        assert err.value == value
        assert field in str(err) and repr(value) in str(err)
        assert str(err).count("<=") + str(err).count("<") >= 1  # the allowed range is stated


@given(value=st.floats(min_value=5e-324, max_value=GREEDY_EPS, exclude_max=True))
def test_tiny_temperature_or_top_p_is_greedy(value):
    assert SamplingParams(temperature=value).is_greedy
    p = SamplingParams(temperature=0.8, top_p=value)
    assert p.is_greedy and p.top_p == 1.0
    assert SamplingParams(repetition_penalty=value).repetition_penalty == max(
        value, REPETITION_PENALTY_MIN)


@given(value=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_integer_fields_reject_fractions(value):
    if value.is_integer():
        return
    with pytest.raises(unillm.InvalidParameterError, match="max_tokens"):
        SamplingParams(max_tokens=value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_rejected(bad):
    with pytest.raises(unillm.InvalidParameterError, match="temperature"):
        SamplingParams(temperature=bad)


def test_unknown_field_names_the_closest_field():
    with pytest.raises(unillm.UnknownParameterError) as info:
        SamplingParams(max_new_tokens=5)
    assert "max_new_tokens" in str(info.value) and "did you mean 'max_tokens'" in str(info.value).lower()


@pytest.mark.parametrize("off", [0, -1])
def test_top_k_has_one_off_value_none(off):
    with pytest.raises(unillm.InvalidParameterError, match="None"):
        SamplingParams(top_k=off)
    assert SamplingParams(top_k=None).top_k is None


def test_types_are_strict():
    for field, value in [("temperature", "0.5"), ("ignore_eos", "yes"), ("max_tokens", True),
                         ("seed", 1.0)]:
        with pytest.raises(unillm.InvalidParameterError, match=field):
            SamplingParams(**{field: value})


def test_min_tokens_cannot_exceed_max_tokens():
    with pytest.raises(unillm.InvalidParameterError, match="min_tokens"):
        SamplingParams(max_tokens=4, min_tokens=5)
    assert SamplingParams(max_tokens=4, min_tokens=4).min_tokens == 4


def test_stop_accepts_a_string_or_a_list_and_rejects_empty_strings():
    assert SamplingParams(stop="ab").stop == ("ab",)
    assert SamplingParams(stop=["a", "b"]).stop == ("a", "b")
    assert SamplingParams(stop_token_ids=7).stop_token_ids == (7,)
    with pytest.raises(unillm.InvalidParameterError, match="stop"):
        SamplingParams(stop=[""])
    with pytest.raises(unillm.InvalidParameterError, match="stop_token_ids"):
        SamplingParams(stop_token_ids=[-1])


def test_params_are_immutable_hashable_and_replace_validates():
    p = SamplingParams(max_tokens=3)
    with pytest.raises(Exception):
        p.max_tokens = 4  # type: ignore[misc]
    assert hash(p) == hash(SamplingParams(max_tokens=3))
    assert p.replace(temperature=0).is_greedy
    with pytest.raises(unillm.InvalidParameterError):
        p.replace(temperature=-1)


def test_defaults_are_explicit_and_documented():
    p = SamplingParams()
    assert p.non_default_fields() == {}
    assert (p.max_tokens, p.temperature, p.top_p, p.top_k, p.min_p) == (256, 1.0, 1.0, None, 0.0)
    table = parameter_table()
    assert [row["field"] for row in table] == list(SamplingParams.model_fields)
    assert all(row["meaning"] and row["allowed"] for row in table)


def test_error_classes_are_value_errors():
    for exc in (unillm.InvalidParameterError, unillm.UnknownParameterError,
                unillm.UnsupportedParameterError, unillm.ContextLengthError):
        assert issubclass(exc, ValueError) and issubclass(exc, unillm.UnillmError)
