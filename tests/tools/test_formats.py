"""Which format a model's calls are read in, and what happens where a call cannot be enforced.

- a model whose chat template spells no known format: a clear error naming ``tool_parser``,
  and the call works once it is named (on the call or on `unillm.load`);
- a tokenizer that declares its own ``response_template``: that parser wins;
- an engine that cannot constrain (CTranslate2): ``required`` and named calls are refused
  with the engines that can, ``auto`` is read from the text freely.
"""

from __future__ import annotations

import pytest

import unillm
from unillm import InvalidParameterError, UnsupportedParameterError
from unillm import SamplingParams as SP

from ..conftest import require_engine
from .conftest import TOOLS, assert_valid_call, conversation

pytest.importorskip("llguidance", reason="tool constraints need llguidance (unillm[structured])")
pytest.importorskip("jsonschema")

GREEDY = SP(max_tokens=128, temperature=0.0)
NAMED = {"type": "function", "function": {"name": "add"}}

# transformers' own layout for Qwen-style replies, as a tokenizer would declare it
RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|im_start|>assistant\n",
    "fields": {
        "tool_calls": {"open_pattern": r"\s*<tool_call>", "close": "</tool_call>",
                       "repeats": True, "content": "json",
                       "transform": {"type": "function", "function": "{content}"}},
        "content": {"content": "text"},
    },
}


def test_a_template_without_a_known_format_is_a_clear_error(hf_generator):
    with pytest.raises(InvalidParameterError) as err:
        hf_generator.chat(conversation("Hi"), GREEDY, tools=TOOLS)
    assert err.value.field == "tool_parser"
    assert "hermes, llama3_json, mistral" in str(err.value) and "tool_parser=" in str(err.value)
    # a plain chat, and tool_choice none, need no format
    assert hf_generator.chat(conversation("Hi"), SP(max_tokens=4), tools=TOOLS,
                             tool_choice="none").tool_calls is None


def test_naming_the_format_on_the_call_or_at_load(hf_generator, tiny_llama):
    out = hf_generator.chat(conversation("Hi"), GREEDY, tools=TOOLS, tool_choice=NAMED,
                            tool_parser="hermes")
    assert out.tool_format == "hermes" and out.text.startswith("<tool_call>\n")
    assert_valid_call("add", out.tool_calls[0].arguments)
    with unillm.load("transformers", tiny_llama, tool_parser="mistral") as gen:
        out = gen.chat(conversation("Hi"), GREEDY, tools=TOOLS, tool_choice=NAMED)
        assert out.tool_format == "mistral" and out.text.startswith("[TOOL_CALLS]")
    with pytest.raises(InvalidParameterError, match="tool_parser"):
        unillm.load("transformers", tiny_llama, tool_parser="pythonic")


def test_the_tokenizers_own_response_template_is_the_parser(tool_models):
    require_engine("transformers")
    with unillm.load("transformers", tool_models("qwen2-tools")) as gen:
        gen.tokenizer.hf.response_template = RESPONSE_TEMPLATE
        whole = gen.chat(conversation("Add 2 and 3."), GREEDY, tools=TOOLS,
                         tool_choice="required", parallel_tool_calls=False)
        assert whole.tool_format == "response_template"
        assert whole.finish_reason == "tool_calls" and len(whole.tool_calls) == 1
        call = whole.tool_calls[0]
        assert_valid_call(call.name, call.arguments)
        stream = gen.stream_chat(conversation("Add 2 and 3."), GREEDY, tools=TOOLS,
                                 tool_choice="required", parallel_tool_calls=False)
        pieces = [d for c in stream for d in c.tool_calls]
        assert [(d.name, d.arguments) for d in pieces] == [(call.name, call.arguments)]
        # its layout could not be written as a grammar: required is refused, auto is read
        gen.tokenizer.hf.response_template = {
            **RESPONSE_TEMPLATE, "fields": {**RESPONSE_TEMPLATE["fields"], "tool_calls": {
                **RESPONSE_TEMPLATE["fields"]["tool_calls"], "content": "text"}}}
        with pytest.raises(UnsupportedParameterError, match="tool_parser=hermes"):
            gen.chat(conversation("Hi"), GREEDY, tools=TOOLS, tool_choice="required")
        out = gen.chat(conversation("Hi"), SP(max_tokens=8), tools=TOOLS)
        assert out.tool_format == "response_template" and out.tool_calls == ()


def test_an_engine_that_cannot_constrain_refuses_required_and_reads_auto(tool_models):
    require_engine("ctranslate2")
    with unillm.load("ctranslate2", tool_models("qwen2-tools")) as gen:
        for choice in ("required", NAMED):
            with pytest.raises(UnsupportedParameterError) as err:
                gen.chat(conversation("Hi"), GREEDY, tools=TOOLS, tool_choice=choice)
            assert err.value.field == "tool_choice"
            assert "transformers, llamacpp and vllm" in str(err.value)
        out = gen.chat(conversation("Hi"), SP(max_tokens=16, temperature=0.0), tools=TOOLS)
        assert out.tool_format == "hermes" and out.params.structured is None
        assert out.tool_calls == () and out.content == out.text


def test_tools_and_a_response_constraint_are_refused_together(tool_models):
    require_engine("transformers")
    with unillm.load("transformers", tool_models("qwen2-tools")) as gen:
        with pytest.raises(UnsupportedParameterError, match="together with tools"):
            gen.chat(conversation("Hi"), SP(structured={"regex": "a+"}), tools=TOOLS)


def test_a_bare_gguf_file_renders_and_enforces_tools(tool_models):
    """A .gguf without its Hugging Face directory: llama.cpp's own tokenizer renders the
    template it carries (tools included) and the grammar runs on its vocabulary."""
    require_engine("llamacpp")
    from unillm_llamacpp.convert import cached_gguf

    gguf = cached_gguf(tool_models("llama-tools"), "f32")
    with unillm.load("llamacpp", str(gguf)) as gen:
        assert type(gen.tokenizer).__name__ == "GGUFTokenizer"
        out = gen.chat(conversation("Add 2 and 3."), GREEDY, tools=TOOLS, tool_choice=NAMED)
        assert out.tool_format == "llama3_json" and out.finish_reason == "tool_calls"
        assert_valid_call("add", out.tool_calls[0].arguments)
        assert '"name": "add"' in gen.tokenizer.chat_text(conversation("x"), TOOLS)
