"""`Generator.chat(..., tools=...)` on every local engine that constrains, and on one that
cannot, over the three tool-format test models (Hermes/Qwen, Llama 3 JSON, Mistral).

Random-weight models never call a tool on their own; forced by ``required`` or a named tool,
every call they make must parse, name an offered tool and validate against its schema, over
many prompts and seeds, batched and streamed, sync and async.
"""

from __future__ import annotations

import asyncio
import json

import pytest

import unillm
from unillm import SamplingParams as SP

from ..conftest import require_engine
from .conftest import PROMPTS, TOOL_PRESETS, TOOLS, assert_valid_call, conversation

pytest.importorskip("llguidance", reason="tool constraints need llguidance (unillm[structured])")
pytest.importorskip("jsonschema")

ENGINES = ["transformers", "llamacpp", "vllm"]
OPTIONS = {"transformers": {"dtype": "float32"},
           "llamacpp": {"quantization": "f32", "kv_cache_type": "f32"},
           "vllm": {"dtype": "float32", "enforce_eager": True}}
NAMED = {"type": "function", "function": {"name": "set_alarm"}}


@pytest.fixture(scope="module", params=[(e, p) for e in ENGINES for p in TOOL_PRESETS],
                ids=lambda ep: f"{ep[0]}-{ep[1]}")
def gen(request, tool_models):
    engine, preset = request.param
    require_engine(engine)
    g = unillm.load(engine, tool_models(preset), **OPTIONS[engine])
    g.preset = preset
    yield g
    g.close()


def seeded(count: int, max_tokens: int = 128) -> list[SP]:
    return [SP(max_tokens=max_tokens, temperature=1.0, seed=seed) for seed in range(count)]


def test_required_calls_parse_and_validate_over_prompts_and_seeds(gen):
    convs = [conversation(p) for p in PROMPTS for _ in range(2)]
    outs = gen.chat(convs, seeded(len(convs)), tools=TOOLS, tool_choice="required",
                    parallel_tool_calls=False)
    for out in outs:
        assert out.tool_format == TOOL_PRESETS[gen.preset]
        assert out.finish_reason == "tool_calls", out.text
        assert len(out.tool_calls) == 1 and out.content is None, out.text
        assert_valid_call(out.tool_calls[0].name, out.tool_calls[0].arguments)


def test_parallel_calls_are_each_valid(gen):
    """With parallel calls the model decides when to stop calling; a random model may go on
    to max_tokens, so the call it was writing then may be cut. Every other call is whole."""
    convs = [conversation(p) for p in PROMPTS[:3]]
    outs = gen.chat(convs, seeded(len(convs), 96), tools=TOOLS, tool_choice="required")
    for out in outs:
        assert out.tool_calls, out.text
        assert len({c.id for c in out.tool_calls}) == len(out.tool_calls)
        whole = out.tool_calls if out.finish_reason == "tool_calls" else out.tool_calls[:-1]
        assert out.finish_reason in ("tool_calls", "length")
        for call in whole:
            assert_valid_call(call.name, call.arguments)


def test_a_named_tool_is_called_once(gen):
    convs = [conversation(p) for p in PROMPTS[3:]]
    outs = gen.chat(convs, seeded(len(convs)), tools=TOOLS, tool_choice=NAMED)
    for out in outs:
        assert [c.name for c in out.tool_calls] == ["set_alarm"], out.text
        assert out.finish_reason == "tool_calls"
        assert_valid_call("set_alarm", out.tool_calls[0].arguments)


def test_streamed_pieces_add_up_to_the_calls_of_the_batch_call(gen):
    conv, params = conversation(PROMPTS[0]), SP(max_tokens=128, temperature=0.0)
    whole = gen.chat(conv, params, tools=TOOLS, tool_choice="required")
    stream = gen.stream_chat(conv, params, tools=TOOLS, tool_choice="required")
    assert whole.tool_calls
    chunks = list(stream)
    built: dict[int, list[str]] = {}
    for chunk in chunks:
        for d in chunk.tool_calls:
            if d.id is not None:
                built[d.index] = [d.id, d.name, d.arguments]
            else:
                built[d.index][2] += d.arguments
    done = stream.completion
    assert "".join(c.text for c in chunks) == whole.text == done.text
    assert [tuple(built[k]) for k in sorted(built)] == \
        [(c.id, c.name, c.arguments) for c in done.tool_calls]
    assert [(c.name, c.arguments) for c in done.tool_calls] == \
        [(c.name, c.arguments) for c in whole.tool_calls]
    assert chunks[-1].finish_reason == done.finish_reason == whole.finish_reason
    assert all(c.content == "" for c in chunks)  # only calls: no content


def test_async_chat_and_stream_carry_the_calls(gen):
    conv, params = conversation(PROMPTS[1]), SP(max_tokens=128, temperature=0.0)

    async def run():
        out = await gen.achat(conv, params, tools=TOOLS, tool_choice=NAMED)
        stream = gen.astream_chat(conv, params, tools=TOOLS, tool_choice=NAMED)
        pieces = [d async for c in stream for d in c.tool_calls]
        return out, pieces, stream.completion

    out, pieces, done = asyncio.run(run())
    assert out.tool_calls[0].name == pieces[0].name == "set_alarm"
    assert "".join(p.arguments for p in pieces) == done.tool_calls[0].arguments == \
        out.tool_calls[0].arguments


def test_a_tool_reply_renders_back_and_the_model_answers(gen):
    conv = conversation(PROMPTS[0])
    first = gen.chat(conv, SP(max_tokens=128, temperature=0.0), tools=TOOLS, tool_choice=NAMED)
    call = first.tool_calls[0]
    history = conv + [{"role": "assistant", "content": None,
                       "tool_calls": [call.to_openai()]},
                      {"role": "tool", "tool_call_id": call.id, "content": "Set for 07:30."}]
    prompt = gen.tokenizer.chat_text(history, TOOLS)
    assert "Set for 07:30." in prompt and call.name in prompt
    assert json.dumps(json.loads(call.arguments), ensure_ascii=False) in prompt  # an object
    answer = gen.chat(history, SP(max_tokens=12, temperature=0.0), tools=TOOLS,
                      tool_choice="none")
    assert answer.tool_calls is None and answer.tool_format is None
    assert answer.content == answer.text and answer.finish_reason in ("stop", "length")


def test_auto_is_lazy_and_a_reply_without_calls_is_all_content(gen):
    out = gen.chat(conversation("Hi"), SP(max_tokens=24, temperature=0.0), tools=TOOLS)
    if gen.preset != "llama-tools":
        assert "[lazy]" in out.params.structured.grammar  # enforced from the marker on
    assert out.tool_calls == () or out.finish_reason == "tool_calls"
    if not out.tool_calls:
        assert out.content == out.text and out.finish_reason in ("stop", "length")


def test_auto_constrains_nothing_before_the_marker(gen):
    """Greedy tokens with ``auto`` are those of the same prompt without a grammar, until a
    call starts; the one exception is a raw 0xFF byte, which llguidance reserves (no UTF-8
    text holds it; only random weights write it)."""
    convs, params = [conversation(p) for p in PROMPTS], SP(max_tokens=64, temperature=0.0)
    autos = gen.chat(convs, params, tools=TOOLS)
    frees = gen.chat(convs, params, tools=TOOLS, tool_choice="none")
    for prompt, auto, free in zip(PROMPTS, autos, frees):
        if auto.tool_calls:
            continue
        same = [a == b for a, b in zip(auto.token_ids, free.token_ids)]
        if all(same) and len(auto.token_ids) == len(free.token_ids):
            continue
        k = same.index(False) if False in same else min(len(auto.token_ids),
                                                         len(free.token_ids))
        diverged = free.token_ids[k] if k < len(free.token_ids) else auto.token_ids[k]
        assert "\u00ff" in gen.tokenizer.hf.convert_ids_to_tokens(diverged), (prompt, k)


def test_greedy_copies_name_their_calls_apart(gen):
    out = gen.chat(conversation(PROMPTS[2]), SP(max_tokens=128, temperature=0.0, n=3),
                   tools=TOOLS, tool_choice=NAMED)
    assert len(out.samples) == 3
    assert len({s.tool_calls[0].id for s in out.samples}) == 3
    assert len({s.tool_calls[0].arguments for s in out.samples}) == 1


def test_a_stop_string_that_cuts_a_call_leaves_finish_reason_stop(gen):
    params = SP(max_tokens=128, temperature=0.0, stop=['"minute"'])
    out = gen.chat(conversation(PROMPTS[2]), params, tools=TOOLS, tool_choice=NAMED)
    assert out.stop_reason == '"minute"' and out.finish_reason == "stop"
    assert out.tool_calls[0].name == "set_alarm"  # what was written, cut short
    stream = gen.stream_chat(conversation(PROMPTS[2]), params, tools=TOOLS, tool_choice=NAMED)
    assert list(stream)[-1].finish_reason == stream.completion.finish_reason == "stop"
