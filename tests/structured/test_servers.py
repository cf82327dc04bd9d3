"""Structured output and token rules through HTTP engines, against real servers: the `openai`
engine on vLLM's server, llama.cpp's llama-server and llama-cpp-python's server (each profile
sends the server's own fields: unillm/backends/_server_constraints.py), and the `tgi` engine's
`grammar` on the TGI-protocol stand-in (tests/servers/tgi_standin.py; no real TGI runs here).

Outputs are validated independently; servers choose their JSON whitespace themselves, so JSON
is asked for with ``whitespace="flexible"`` and compact (the default) is refused with that
reason. A random model writes whitespace until max_tokens under a flexible grammar, so JSON
runs with a logit_bias of -100 on the whitespace-only tokens (the token rules reaching the
server too); of the samples, those that end are validated, and some must end.
"""

from __future__ import annotations

import json
import re

import pytest

import unillm
from unillm import SamplingParams as SP

from ..conftest import require_engine

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "n"],
          "properties": {"city": {"enum": ["Zürich", "東京", "Paris"]},
                         "n": {"type": "integer", "minimum": 0, "maximum": 9}}}
JSON = {"json_schema": SCHEMA, "whitespace": "flexible"}
CHOICE = {"choice": ["yes", "no", "none", "peut-être", "かも"]}
REGEX = {"regex": r"[a-z]{2,5}-[0-9]{2}"}
PROMPTS = ["The answer is", "über", "def f(x):"]
SERVERS = {  # fixture, kinds the profile sends
    "vllm_server": ("json_schema", "regex", "choice"),
    "llama_server": ("json_schema", "choice"),
    "llama_cpp_server": ("choice",),  # its JSON-schema converter ignores bounds
}


@pytest.fixture(scope="module", params=list(SERVERS))
def served(request, tiny_llama):
    require_engine("openai")
    model, options = request.getfixturevalue(request.param)(tiny_llama)
    g = unillm.load("openai", model, **options)
    yield request.param, g
    g.close()


def _valid(structured: dict, text: str) -> bool:
    import jsonschema

    if "json_schema" in structured:
        jsonschema.validate(json.loads(text), structured["json_schema"])
        return True
    if "regex" in structured:
        return re.fullmatch(structured["regex"], text) is not None
    return text in structured["choice"]


@pytest.fixture(scope="module")
def no_spaces(tiny_llama) -> dict[int, float]:
    """-100 on every token that is only whitespace."""
    from unillm.tokenizer import HFTokenizer

    tok = HFTokenizer.from_pretrained(tiny_llama)
    return {i: -100.0 for i in range(tok.vocab_size)
            if tok.decode([i]) and tok.decode([i]).isspace()}


def _run(g, structured: dict, chat: bool, bias: dict, **sampling):
    if "json_schema" in structured:
        sampling["logit_bias"] = bias
    params = SP(max_tokens=48, structured=structured, **sampling)
    if chat:
        return [g.chat([{"role": "user", "content": p}], params) for p in PROMPTS]
    return g.generate(PROMPTS, params)


@pytest.mark.parametrize("kind", ["json_schema", "regex", "choice"])
@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
def test_outputs_validate_through_each_server(served, kind, chat, no_spaces):
    name, g = served
    structured = {"json_schema": JSON, "regex": REGEX, "choice": CHOICE}[kind]
    if kind not in SERVERS[name]:
        with pytest.raises(unillm.UnsupportedParameterError, match="exact here"):
            g.generate("x", SP(max_tokens=4, structured=structured))
        return
    ended = 0
    for sampling in ({"temperature": 0.0}, {"temperature": 1.0, "seed": 5}):
        for out in _run(g, structured, chat, no_spaces, **sampling):
            assert out.complete == (out.finish_reason == "stop" and _valid(structured, out.text))
            if out.finish_reason == "stop":
                assert _valid(structured, out.text), out.text
                ended += 1
    assert ended, "no sample ended: nothing was validated"


def test_the_server_receives_its_own_fields(served):
    name, g = served
    out = g.generate(PROMPTS[0], SP(max_tokens=16, temperature=0.0, structured=CHOICE))
    sent = out.engine_params
    if name == "vllm_server":
        assert sent["structured_outputs"] == {"choice": CHOICE["choice"]}
    else:
        assert sent["grammar"].startswith("root ::= ")
    assert out.text in CHOICE["choice"] and out.complete


def test_streamed_text_equals_batch_text(served):
    _, g = served
    params = SP(max_tokens=32, temperature=0.0, structured=CHOICE)
    whole = g.generate(PROMPTS[1], params)
    stream = g.stream(PROMPTS[1], params)
    assert "".join(c.text for c in stream) == whole.text
    assert stream.completion.complete is whole.complete


def test_compact_json_and_grammars_are_refused_with_the_reason(served):
    name, g = served
    with pytest.raises(unillm.UnsupportedParameterError, match="grammar"):
        g.generate("x", SP(max_tokens=4, structured={"grammar": 'start: "a"'}))
    if "json_schema" not in SERVERS[name]:
        return
    with pytest.raises(unillm.UnsupportedParameterError, match="whitespace='flexible'"):
        g.generate("x", SP(max_tokens=4, structured={"json_schema": SCHEMA}))
    with pytest.raises(unillm.InvalidParameterError, match=r'\["if"\]'):  # checked before sending
        g.generate("x", SP(max_tokens=4, structured={"json_schema": {"if": {}},
                                                      "whitespace": "flexible"}))


def test_a_logit_bias_reaches_the_server(served):
    _, g = served
    token = 299  # " the" in the test tokenizer
    out = g.generate(PROMPTS[0], SP(max_tokens=6, temperature=0.0, logit_bias={token: 100.0}))
    assert out.text == " the" * 6


def test_vllm_server_applies_allowed_ids_and_bad_words_as_in_process(served, hf_generator):
    name, g = served
    if name != "vllm_server":
        with pytest.raises(unillm.UnsupportedParameterError, match="has no request field"):
            g.generate("x", SP(max_tokens=4, bad_words=["a"]))
        return
    for rules in ({"allowed_token_ids": list(range(100, 160))}, {"bad_words": ["the", "ValueError"]}):
        params = SP(max_tokens=16, temperature=0.0, **rules)
        expected = hf_generator.generate(PROMPTS[0], params).text
        # servers drop or keep partial UTF-8 characters their own way (tests/conformance)
        assert g.generate(PROMPTS[0], params).text.replace("\ufffd", "") == \
            expected.replace("\ufffd", "")


@pytest.fixture(scope="module")
def tgi(tgi_standin):
    require_engine("tgi")
    g = unillm.load("tgi", "", base_url=tgi_standin)
    yield g
    g.close()


@pytest.mark.parametrize("structured", [JSON, REGEX, CHOICE], ids=["json", "regex", "choice"])
def test_tgi_grammar_parameter(tgi, structured):
    outs = [tgi.generate(p, SP(max_tokens=48, temperature=0.0, structured=structured))
            for p in PROMPTS]
    ended = [o for o in outs if o.finish_reason == "stop"]
    assert ended
    for out in ended:
        assert _valid(structured, out.text), out.text
        assert out.complete
    assert "grammar" in outs[0].engine_params
    with pytest.raises(unillm.UnsupportedParameterError, match="whitespace"):
        tgi.generate("x", SP(max_tokens=4, structured={"json_schema": SCHEMA}))
