"""Prompts, parameters and helpers the kit's checks share.

Engines that produce token ids are compared on ids; text engines (HTTP servers) on text.
"""

from __future__ import annotations

import functools

import pytest

import unillm
from unillm import SamplingParams as SP
from unillm.engine import EMULATED_BY_CORE

from . import reference

PROMPTS = [
    "The quick brown fox",
    "def fibonacci(n):\n    return",
    "Le café est très chaud, 東京 🙂",
    "x",
    "import os\nimport sys\n\nclass Config(object):\n    def __init__(self, path):",
]
N = 32
GREEDY = SP(max_tokens=N, temperature=0.0)
GREEDY_LONG = SP(max_tokens=48, temperature=0.0, ignore_eos=True)

EOS_CANDIDATES = PROMPTS + ["Once upon a time", "SELECT * FROM", "Hello", "# comment",
                            "while True:", "The capital of France is", "1 2 3", "def main():",
                            "import os"]

# For inexact targets: more prompts to search, since a quantized model's greedy path reaches
# eos from fewer of them (4-bit: about 1 in 14 of the candidates above; a re-calibrated GPTQ
# model sometimes from none of them). Fixed word pairs, so every machine searches the same list.
_WORDS = ["the", "def", "return", "self", "import", "for", "if", "class", "value", "data",
          "print", "name", "file", "list", "error", "None", "path", "time", "line", "result"]
MORE_EOS_CANDIDATES = [f"{a} {b}" for a in _WORDS for b in _WORDS if a != b]


def uses_ids(gen: unillm.Generator) -> bool:
    return gen.capabilities.token_ids


def supports(gen: unillm.Generator, field: str) -> bool:
    """The engine honours `field` natively, or unillm emulates it for every engine."""
    return field in gen.capabilities.params or field in EMULATED_BY_CORE


def skip_unless_supported(gen: unillm.Generator, field: str) -> None:
    if not supports(gen, field):
        pytest.skip(f"{field} not supported (test_unsupported_parameters_raise covers it)")


def server_profile(gen: unillm.Generator, flag: str) -> bool:
    """A documented limitation of a text engine's server, from unillm's server profile
    (unillm/backends/_profiles.py): whether it streams token counts (`stream_usage`), whether it
    streams a partial UTF-8 character at the end as U+FFFD (`stream_keeps_partial_char`). An
    engine without a profile is held to the strict comparison (True)."""
    profile = getattr(getattr(gen.engine, "protocol", None), "profile", None)
    return getattr(profile, flag, True)


def server_text(text: str) -> str:
    """Text as servers send it. A random model can emit byte tokens that are not valid UTF-8:
    the Hugging Face tokenizer writes U+FFFD for them, servers (llama.cpp, vLLM) drop them. A
    text engine only gets the server's text, so that choice is the server's; every valid
    character must still match."""
    return text.replace("\ufffd", "")


def assert_matches_reference(gen, path, prompt, out, max_tokens=N):
    expected = reference.greedy_ids(path, reference.encode(path, prompt), max_tokens)
    if uses_ids(gen):
        assert list(out.token_ids) == expected, f"greedy ids differ for {prompt!r}"
    else:
        body = expected[:-1] if expected and expected[-1] == reference.eos_id(path) else expected
        assert server_text(out.text) == server_text(reference.decode(path, body)), (
            f"greedy text differs for {prompt!r}")


def pick_stop(text: str) -> str:
    """A 2-character stop string from the middle third of `text` (no replacement chars)."""
    for start in range(len(text) // 3, len(text) - 2):
        s = text[start:start + 2]
        if "\ufffd" not in s and s.strip():
            return s
    pytest.fail(f"no usable stop string in {text!r}")


@functools.lru_cache(maxsize=None)
def own_eos_prompt(target_id: str, gen, params: SP = SP(max_tokens=64, temperature=0.0),
                   ) -> tuple[str, int] | None:
    """The first candidate whose greedy continuation on this generator (with `params`) ends
    with eos after k >= 4 tokens, confirmed on its own (a batch could round differently)."""
    candidates = EOS_CANDIDATES + MORE_EOS_CANDIDATES
    for start in range(0, len(candidates), 32):
        chunk = candidates[start:start + 32]
        outs = gen.generate(chunk, params)
        for prompt, out in zip(chunk, outs):
            if out.finish_reason == "stop" and out.timing.output_tokens >= 4:
                alone = gen.generate(prompt, params)
                if alone.finish_reason == "stop" and alone.timing.output_tokens >= 4:
                    return prompt, alone.timing.output_tokens
    return None


def eos_prompt(path: str, target=None, gen=None) -> tuple[str, int]:
    """A prompt whose greedy continuation ends with eos after k >= 4 tokens (the test model
    is built so that some do). For an inexact target (quantized weights), whose greedy path may
    differ from the reference's, its own greedy output picks the prompt."""
    if target is not None and not target.exact:
        found = own_eos_prompt(target.id, gen)
        if found is None:
            n = len(EOS_CANDIDATES) + len(MORE_EOS_CANDIDATES)
            pytest.fail(f"{target.id} reaches eos from none of the {n} candidate prompts")
        return found
    eos = reference.eos_id(path)
    for prompt in EOS_CANDIDATES:
        ids = reference.greedy_ids(path, reference.encode(path, prompt), 64)
        if ids[-1] == eos and len(ids) >= 4:
            return prompt, len(ids)
    pytest.fail("the test model reaches eos from none of the candidate prompts")


def new_token_at(gen, start: int) -> tuple[list[int], int]:
    """PROMPTS[2]'s greedy ids, and the first position >= `start` whose token is new there."""
    ids = list(gen.generate(PROMPTS[2], GREEDY_LONG).token_ids)
    return ids, next(i for i in range(start, len(ids)) if ids[i] not in ids[:i])


def stream_texts(gen, prompt, params):
    """One `stream` call: the text streamed for each sample, and the final Completion."""
    stream = gen.stream(prompt, params)
    texts: dict[int, str] = {}
    for chunk in stream:
        texts[chunk.index] = texts.get(chunk.index, "") + chunk.text
    return texts, stream.completion


def stream_many_texts(gen, prompts, params):
    """One `stream_many` call: the text streamed for each (prompt, sample), and each prompt's
    Completion."""
    texts: dict[tuple[int, int], str] = {}
    completions = {}
    for index, item in gen.stream_many(prompts, params):
        assert index not in completions, "an item came after that prompt's Completion"
        if isinstance(item, unillm.Completion):
            completions[index] = item
        else:
            texts[index, item.index] = texts.get((index, item.index), "") + item.text
    return texts, completions
