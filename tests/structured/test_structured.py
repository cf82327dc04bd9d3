"""Structured output: the same constraint means the same thing on every engine that claims it.

Outputs are validated independently (jsonschema, `re.fullmatch`, membership), on random-weight
test models that write garbage when unconstrained, greedy and seeded, batched with mixed
constraints, and streamed (streamed text equals batch text).
"""

from __future__ import annotations

import json
import re

import pytest

import unillm
from unillm import SamplingParams as SP
from unillm.testing.fake import FakeEngine

from ..conftest import require_engine

SCHEMAS = {
    "nested": {
        "type": "object", "additionalProperties": False, "required": ["user", "ok"],
        "properties": {
            "user": {"type": "object", "additionalProperties": False, "required": ["id"],
                     "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 999},
                                    "nick": {"type": "string", "maxLength": 6}}},
            "ok": {"type": "boolean"},
        },
    },
    "array-bounds-enum": {
        "type": "object", "additionalProperties": False, "required": ["tags"],
        "properties": {"tags": {"type": "array", "minItems": 1, "maxItems": 3,
                                "items": {"enum": ["red", "grün", "青"]}}},
    },
    "pattern-integer-range-optional": {
        "type": "object", "additionalProperties": False, "required": ["code", "score"],
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
                       "score": {"type": "integer", "minimum": -15, "maximum": 25},
                       "note": {"type": ["string", "null"], "maxLength": 4}},
    },
    "unicode-string": {
        "type": "object", "additionalProperties": False, "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 5}},
    },
    "unicode-forced": {  # every valid output holds non-ASCII text
        "type": "object", "additionalProperties": False, "required": ["city", "word", "mark"],
        "properties": {"city": {"enum": ["Zürich", "東京", "Москва"]},
                       "word": {"type": "string", "pattern": "^[α-ω]{2,4}$"},
                       "mark": {"const": "naïve ✓"}},
    },
    "top-level-array": {"type": "array", "items": {"type": "integer", "minimum": 0,
                                                   "maximum": 99}, "maxItems": 4},
}
REGEXES = [r"[a-z]{3,6}@[a-z]{2,4}\.(com|org)", r"(yes|no), because [a-zé ]{1,12}\.",
           r"[0-9]{4}-[0-9]{2}-[0-9]{2}"]
CHOICES = [["positive", "negative", "neutral"], ["日本", "中国", "한국"]]
PROMPTS = ["Write JSON:", "The answer is", "über"]
ENGINES = ["fake", "transformers", "llamacpp", "vllm"]
OPTIONS = {"transformers": {"dtype": "float32"},
           "llamacpp": {"quantization": "f32", "kv_cache_type": "f32"},
           "vllm": {"dtype": "float32", "enforce_eager": True}}


@pytest.fixture(scope="module", params=ENGINES)
def gen(request, tiny_llama):
    if request.param == "fake":
        g = unillm.Generator(FakeEngine(), engine_name="fake", model="fake")
    else:
        require_engine(request.param)
        g = unillm.load(request.param, tiny_llama, **OPTIONS[request.param])
    yield g
    g.close()


def _check(structured: dict, text: str, finish: str) -> None:
    import jsonschema

    assert finish == "stop", f"did not finish within max_tokens: {text!r}"
    if "json_schema" in structured:
        jsonschema.validate(json.loads(text), structured["json_schema"])
        if structured["json_schema"] is SCHEMAS["unicode-forced"]:
            assert not text.isascii(), text
        outside_strings = re.sub(r'"(\\.|[^"\\])*"', '""', text)
        assert not any(c.isspace() for c in outside_strings), f"not compact: {text!r}"
    elif "regex" in structured:
        assert re.fullmatch(structured["regex"], text), text
    else:
        assert text in structured["choice"]


CASES = ([{"json_schema": s} for s in SCHEMAS.values()] + [{"regex": r} for r in REGEXES]
         + [{"choice": c} for c in CHOICES])
IDS = list(SCHEMAS) + [f"regex{i}" for i in range(len(REGEXES))] + [f"choice{i}" for i in range(len(CHOICES))]


@pytest.mark.parametrize("structured", CASES, ids=IDS)
@pytest.mark.parametrize("sampling", ["greedy", "seeded"])
def test_outputs_are_valid_greedy_and_seeded(gen, structured, sampling):
    params = SP(max_tokens=96, structured=structured,
                **({"temperature": 0.0} if sampling == "greedy" else {"temperature": 1.0, "seed": 3}))
    for out in gen.generate(PROMPTS, params):
        _check(structured, out.text, out.finish_reason)


def test_one_batch_mixes_constraints_and_unconstrained_rows(gen):
    picks = [CASES[0], None, CASES[IDS.index("regex1")], CASES[-1]]
    params = [SP(max_tokens=96, temperature=0.0, structured=s) for s in picks]
    outs = gen.generate(["a", "b", "c", "d"], params)
    for s, out in zip(picks, outs):
        if s is None:
            assert out.finish_reason in ("stop", "length")
        else:
            _check(s, out.text, out.finish_reason)
            alone = gen.generate(["a", "b", "c", "d"][picks.index(s)],
                                 SP(max_tokens=96, temperature=0.0, structured=s))
            assert alone.text == out.text  # a row's constraint is its own


@pytest.mark.parametrize("structured", [CASES[0], CASES[IDS.index("regex0")], CASES[-2]],
                         ids=["json", "regex", "choice"])
def test_streamed_text_equals_batch_text(gen, structured):
    params = SP(max_tokens=96, temperature=0.0, structured=structured)
    whole = gen.generate(PROMPTS[1], params)
    stream = gen.stream(PROMPTS[1], params)
    assert "".join(c.text for c in stream) == whole.text
    assert stream.completion.finish_reason == whole.finish_reason


def test_unconstrained_the_model_writes_garbage(gen):
    """The check above means something: without the constraint this model's text is not JSON."""
    out = gen.generate(PROMPTS[0], SP(max_tokens=40, temperature=0.0))
    with pytest.raises(ValueError):
        json.loads(out.text)


def test_a_number_in_range_is_valid_when_the_sample_ends(gen):
    """Unbounded digits may run to max_tokens on a random model; what ends is valid."""
    schema = {"type": "object", "additionalProperties": False, "required": ["x"],
              "properties": {"x": {"type": "number", "minimum": -1.5, "maximum": 2.5}}}
    outs = gen.generate(PROMPTS * 2, SP(max_tokens=64, temperature=1.0, seed=11,
                                        structured={"json_schema": schema}))
    import jsonschema

    ended = [o for o in outs if o.finish_reason == "stop"]
    assert ended, [o.text for o in outs]  # some must end, or nothing was validated
    for out in ended:
        jsonschema.validate(json.loads(out.text), schema)
        assert out.complete
    for out in outs:
        assert out.text.startswith('{"x":')
        assert out.complete == (out.finish_reason == "stop")


def test_max_tokens_ends_with_length_and_a_prefix(gen):
    out = gen.generate(PROMPTS[0], SP(max_tokens=3, temperature=0.0,
                                      structured={"json_schema": SCHEMAS["nested"]}))
    assert out.finish_reason == "length"
    assert out.text.startswith("{")


def test_stop_strings_still_cut_the_text(gen):
    structured = {"regex": r"(yes|no), because [a-z ]{4,12}\."}
    whole = gen.generate(PROMPTS[1], SP(max_tokens=40, temperature=0.0, structured=structured))
    full = whole.text
    cut = gen.generate(PROMPTS[1], SP(max_tokens=40, temperature=0.0, structured=structured,
                                      stop=[","]))
    assert cut.text == full.split(",")[0] and cut.stop_reason == ","
    assert whole.complete is True and cut.complete is False  # a prefix, said so


def test_a_grammar_constrains_to_its_language(gen):
    grammar = 'start: "(" num ("+" num)* ")"\nnum: /[0-9]{1,3}/'
    out = gen.generate(PROMPTS[2], SP(max_tokens=40, temperature=1.0, seed=5,
                                      structured={"grammar": grammar}))
    assert re.fullmatch(r"\([0-9]{1,3}(\+[0-9]{1,3})*\)", out.text), out.text


def test_an_unsupported_schema_keyword_is_named(gen):
    with pytest.raises(unillm.InvalidParameterError, match=r'\["if"\]'):
        gen.generate("x", SP(max_tokens=4, structured={"json_schema": {"type": "object", "if": {}}}))


@pytest.mark.parametrize("field,value", [("ignore_eos", True), ("min_tokens", 2)])
def test_fields_that_would_force_tokens_past_the_end_are_refused(gen, field, value):
    with pytest.raises(unillm.UnsupportedParameterError, match=field):
        gen.generate("x", SP(max_tokens=8, structured={"regex": "a+"}, **{field: value}))


def test_the_timing_record_has_compile_and_mask_time(tiny_llama):
    require_engine("transformers")
    with unillm.load("transformers", tiny_llama, dtype="float32") as g:
        out = g.generate("x", SP(max_tokens=16, temperature=0.0,
                                 structured={"choice": ["alpha", "beta"]}))
    assert out.timing.grammar_compile_s is not None and out.timing.grammar_mask_s > 0
    assert out.engine_params["structured"]["library"] == "llguidance"


def test_engines_without_a_logits_hook_refuse_what_they_cannot_enforce(tiny_llama):
    """CTranslate2 scores a choice exactly (test_ctranslate2_choice.py) and refuses the rest,
    saying why and which engines can."""
    require_engine("ctranslate2")
    with unillm.load("ctranslate2", tiny_llama) as g:
        with pytest.raises(unillm.UnsupportedParameterError) as info:
            g.generate("x", SP(structured={"regex": "[a-z]+"}))
    message = str(info.value)
    assert "no hook on the logits" in message and "exact here: choice" in message
    assert "transformers" in message and "vllm" in message


def test_bad_constraints_are_named_errors():
    with pytest.raises(unillm.InvalidParameterError, match="exactly one of"):
        SP(structured={"regex": "a", "choice": ["b"]})
    with pytest.raises(unillm.UnknownParameterError, match="Did you mean 'regex'"):
        SP(structured={"regx": "a"})
    with pytest.raises(unillm.InvalidParameterError, match="not valid JSON"):
        SP(structured={"json_schema": "{nope"})


def test_complete_says_whether_the_text_is_a_full_match_in_batch_and_stream(gen):
    structured = {"json_schema": SCHEMAS["nested"]}
    ended = SP(max_tokens=96, temperature=0.0, structured=structured)
    cut = SP(max_tokens=3, temperature=0.0, structured=structured)
    whole = gen.generate(PROMPTS[0], ended)
    short = gen.generate(PROMPTS[0], cut)
    assert whole.finish_reason == "stop" and whole.complete is True
    assert short.finish_reason == "length" and short.complete is False
    for params, batch in ((ended, whole), (cut, short)):
        stream = gen.stream(PROMPTS[0], params)
        assert "".join(c.text for c in stream) == batch.text
        assert stream.completion.complete is batch.complete
    assert gen.generate(PROMPTS[0], SP(max_tokens=4)).complete is None  # no constraint


@pytest.fixture(scope="module")
def nf4(request):
    """The `bnb` engine (nf4) on the preset whose layers it quantizes (as
    tests/engines/test_quantization.py does)."""
    require_engine("bnb")
    from unillm.testing import build_test_model

    g = unillm.load("bnb", str(build_test_model("llama-quant")), dtype="float32")
    yield g
    g.close()


@pytest.mark.parametrize("case", ["nested", "unicode-forced", "regex0", "choice1"])
def test_a_quantized_nf4_model_is_constrained_the_same_way(nf4, case):
    structured = CASES[IDS.index(case)]
    assert nf4.info["quantization"]["method"] == "nf4"
    for sampling in ({"temperature": 0.0}, {"temperature": 1.0, "seed": 4}):
        for out in nf4.generate(PROMPTS[:2], SP(max_tokens=96, structured=structured,
                                                **sampling)):
            _check(structured, out.text, out.finish_reason)
            assert out.complete is True
