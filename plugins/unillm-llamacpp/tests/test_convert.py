"""The Hugging Face -> GGUF converter: every architecture, every type, the tokenizer, the cache."""

from __future__ import annotations

import random
import sysconfig
import threading
from pathlib import Path

import pytest

import unillm
from unillm import SamplingParams as SP

PROMPTS = ["The quick brown fox", "def fibonacci(n):\n    return", "Le café est très chaud, 東京 🙂"]


@pytest.fixture(scope="module")
def hf_engines(hf_model):
    gens = {}
    yield lambda preset: gens.setdefault(
        preset, unillm.load("transformers", hf_model(preset), dtype="float32"))
    for gen in gens.values():
        gen.close()


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-tiny", "qwen2-tiny"])
def test_each_architecture_converts_and_matches_transformers_greedily(preset, gguf_file, hf_engines):
    # A bare .gguf file: llama.cpp's own tokenizer and the weights as converted. Greedy ids equal
    # float32 transformers' only if names, q/k permutation, transposes, hyper-parameters and
    # the tokenizer are all right.
    with unillm.load("llamacpp", gguf_file(preset, "f32"), kv_cache_type="f32") as gen:
        assert gen.info["tokenizer"] == "GGUFTokenizer"
        params = SP(max_tokens=32, temperature=0.0)
        for prompt in PROMPTS:
            got = gen.generate(prompt, params)
            want = hf_engines(preset).generate(prompt, params)
            assert got.prompt_token_ids == want.prompt_token_ids, f"tokenization of {prompt!r}"
            assert got.token_ids == want.token_ids, f"{preset}: greedy ids for {prompt!r}"
            assert got.text == want.text


@pytest.mark.parametrize("kind,tensor_type", [
    ("f16", "F16"), ("bf16", "BF16"), ("q8_0", "Q8_0"), ("q4_0", "Q4_0"), ("q4_k_m", None),
])
def test_every_type_loads_and_generates(kind, tensor_type, gguf_file):
    import gguf

    path = gguf_file("llama-tiny", kind)
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert types["blk.0.attn_norm.weight"] == "F32"  # 1-D tensors stay float32
    if tensor_type is not None:
        assert types["blk.0.attn_q.weight"] == tensor_type
    with unillm.load("llamacpp", path) as gen:
        out = gen.generate("Hello", SP(max_tokens=8, temperature=0.0, ignore_eos=True))
        assert len(out.token_ids) == 8


def test_smaller_types_make_smaller_files(gguf_file):
    sizes = [Path(gguf_file("llama-quant", kind)).stat().st_size
             for kind in ("f32", "f16", "q8_0", "q4_0")]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0] / 4


def _texts() -> list[str]:
    from unillm.testing.models import MULTILINGUAL_TEXT

    rnd = random.Random(0)
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    texts = [MULTILINGUAL_TEXT, "  two leading spaces", "trailing  ", "a\n\n\nb", "tab\tx\r\ny",
             "'s 'll 're", "123456789 3.14", "<s>inline specials</s>", *PROMPTS]
    for _ in range(150):
        source = rnd.choice(files).read_text(errors="replace")
        start = rnd.randrange(max(1, len(source) - 300))
        texts.append(source[start:start + rnd.randrange(1, 300)])
    return texts


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-tiny", "qwen2-tiny"])
def test_llama_cpp_tokenizes_and_decodes_like_transformers(preset, hf_model, gguf_file):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(hf_model(preset))
    with unillm.load("llamacpp", gguf_file(preset, "f32")) as gen:
        tok = gen.tokenizer
        assert tok.eos_token_ids == {hf.eos_token_id}
        for text in _texts():
            ids = hf.encode(text)
            assert tok.encode(text) == ids, f"{preset}: encoding {text[:40]!r}"
            assert tok.decode(ids) == hf.decode(ids, skip_special_tokens=True,
                                                clean_up_tokenization_spaces=False)


def test_the_chat_template_travels_in_the_gguf_file(hf_model, gguf_file):
    from unillm.tokenizer import HFTokenizer

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Ça va ?"}]
    hf = HFTokenizer.from_pretrained(hf_model("llama-tiny"))
    with unillm.load("llamacpp", gguf_file("llama-tiny", "f32")) as gen:
        assert gen.tokenizer.chat_text(messages) == hf.chat_text(messages)
        assert gen.tokenizer.chat_token_ids(messages) == hf.chat_token_ids(messages)


def test_conversions_are_cached_per_model_and_type(hf_model, tmp_path, monkeypatch):
    from unillm_llamacpp import convert

    calls = []
    real = convert.convert
    monkeypatch.setattr(convert, "convert", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    model = hf_model("gpt2-tiny")
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(convert.cached_gguf(model, "f16",
                                                                               root=tmp_path)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["f16"], "concurrent callers must convert once"
    assert len(set(paths)) == 1 and paths[0].parent.parent == tmp_path
    mtime = paths[0].stat().st_mtime_ns
    assert convert.cached_gguf(model, "f16", root=tmp_path) == paths[0]
    assert paths[0].stat().st_mtime_ns == mtime
    other = convert.cached_gguf(model, "q8_0", root=tmp_path)
    assert other != paths[0] and calls == ["f16", "q8_0"]
    # Only the two finished conversions (and their lock files): no temporary build left over.
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == sorted(
        [paths[0].parent.name, other.parent.name])
    assert sorted(p.name for p in other.parent.iterdir()) == ["model.gguf"]


def test_unsupported_models_and_types_are_refused_by_name(tmp_path, hf_model):
    from unillm_llamacpp.convert import ConversionError, cached_gguf, convert

    (tmp_path / "config.json").write_text('{"architectures": ["MambaForCausalLM"]}')
    with pytest.raises(ConversionError, match="MambaForCausalLM.*LlamaForCausalLM"):
        convert(tmp_path, tmp_path / "out.gguf", "f32")
    with pytest.raises(ConversionError, match="q3_0.*is not one of.*q4_k_m"):
        cached_gguf(hf_model("llama-tiny"), "q3_0")
    with pytest.raises(unillm.InvalidParameterError, match="quantization"):
        unillm.load("llamacpp", hf_model("llama-tiny"), quantization="q3_0")


def test_the_command_line_converts(hf_model, tmp_path, capsys):
    import gguf

    from unillm_llamacpp.convert import main

    out = tmp_path / "model.gguf"
    assert main([hf_model("qwen2-tiny"), str(out), "--type", "q8_0", "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    fields = gguf.GGUFReader(out).fields
    assert fields["general.architecture"].contents() == "qwen2"
    assert fields["tokenizer.ggml.pre"].contents() == "qwen2"
