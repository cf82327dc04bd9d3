"""Build small Hugging Face models locally, deterministically, with no hub.

Tests, benchmarks, examples and the demo all need a real checkpoint, and nothing can be
downloaded. This trains a byte-level BPE tokenizer on the Python standard library's own source
(always on disk) plus a little multilingual text, builds a randomly initialised model from a
fixed seed, and saves both with `save_pretrained`. Results are cached by a key covering every
input (config, corpus, library versions); a build is written to a temporary directory and
renamed into place, so a half-written model is never used.

End-of-sequence is made reachable: a random model emits it about once per vocabulary-size
tokens, too rarely to test eos, `min_tokens` or `ignore_eos`. The builder copies the output
row of a token that greedy decoding reaches mid-sequence from many prompts into eos's row
(scaled by 1.05), so eos wins wherever that token would have, at positions every engine
agrees on.

The saved `generation_config.json` deliberately holds unusual sampling values (top_k 5,
temperature 0.7, repetition penalty 1.3, do_sample): an engine that lets a checkpoint's
defaults leak into generation fails the greedy-parity tests instead of passing silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sysconfig
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ..cache import build_into as _build_into
from ..cache import cache_root
from ..cache import file_lock as _file_lock
from .chat_templates import TEMPLATES as TOOL_TEMPLATES
from .chat_templates import TOOL_PRESETS

log = logging.getLogger("unillm.testing")

BUILDER_VERSION = 3
VOCAB_SIZE = 2048
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
UNK_ID, BOS_ID, EOS_ID, PAD_ID = range(4)

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{{ message['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

LEAK_TRAP_GENERATION_CONFIG = {
    "do_sample": True,
    "top_k": 5,
    "top_p": 0.9,
    "temperature": 0.7,
    "repetition_penalty": 1.3,
    "max_length": 12,
}

MULTILINGUAL_TEXT = """\
Le cœur a ses raisons que la raison ne connaît point. Ça va très bien, merci !
Über allen Gipfeln ist Ruh. Grüße aus München, Straße und Fluß.
¿Dónde está la biblioteca? El niño comió piña en España.
Съешь же ещё этих мягких французских булок, да выпей чаю.
東京は日本の首都です。今日はいい天気ですね。ありがとうございます。
北京是中国的首都。我们一起学习人工智能和自然语言处理。
서울은 한국의 수도입니다. 감사합니다.
مرحبا بالعالم. नमस्ते दुनिया। Γειά σου Κόσμε. שלום עולם.
Emoji: 🙂 🚀 🌍 👩‍💻 ✨ — “quotes”, ‘single’, … ellipsis, 10 € and 5 £.
"""


@dataclass(frozen=True)
class ModelSpec:
    """A test model's shape. `head_dim` 32 keeps vLLM's CPU attention kernels happy."""

    arch: str  # "llama" | "gpt2" | "qwen2"
    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    intermediate_size: int
    max_positions: int = 2048
    tie_embeddings: bool = False
    init_std: float = 0.02
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.heads


PRESETS: dict[str, ModelSpec] = {
    # init_std is larger than transformers' 0.02 so that greedy text is varied rather than one
    # repeated token, and logits have clear margins (parity across engines is robust).
    # ~0.4M parameters: every test and the demo.
    "llama-tiny": ModelSpec("llama", 64, 2, 2, 2, 128, init_std=0.2),
    # Tied input/output embeddings, learned positions, a different tokenizer post-processor.
    "gpt2-tiny": ModelSpec("gpt2", 64, 2, 2, 2, 256, max_positions=1024, tie_embeddings=True,
                           init_std=0.2),
    # Grouped-query attention, qkv biases, tied embeddings.
    "qwen2-tiny": ModelSpec("qwen2", 64, 2, 2, 1, 128, tie_embeddings=True, init_std=0.2),
    # Large enough that quantizers (which skip or reject small layers) quantize every linear
    # layer. A smaller init_std than the tiny presets: random weights give every weight a say,
    # and at 0.1 rounding to 4 bits moved the logits by half their norm and greedy text almost
    # never repeated a token or reached eos; at 0.04 greedy text repeats (penalties have
    # something to act on), eos is reachable from the conformance prompts, and 4-bit logits stay
    # within ~30 % (tests/engines/test_quantization.py).
    "llama-quant": ModelSpec("llama", 256, 2, 8, 8, 768, init_std=0.04),
    # ~25M parameters: recorded benchmarks.
    "llama-small": ModelSpec("llama", 512, 8, 16, 16, 1376, init_std=0.07),
}


def _corpus_files() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in stdlib.glob("*.py") if p.is_file())


def _corpus() -> Iterator[str]:
    yield MULTILINGUAL_TEXT
    for path in _corpus_files():
        yield path.read_text(encoding="utf-8", errors="replace")


def _corpus_digest() -> str:
    h = hashlib.sha256(MULTILINGUAL_TEXT.encode())
    for path in _corpus_files():
        h.update(path.name.encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def build_tokenizer(add_bos: bool, cache_dir: Path | None = None) -> Path:
    """Train (or reuse) the byte-level BPE tokenizer; returns its `save_pretrained` directory."""
    import tokenizers

    root = (cache_dir or cache_root()) / "tokenizers"
    key = hashlib.sha256(
        json.dumps([BUILDER_VERSION, VOCAB_SIZE, add_bos, _corpus_digest(),
                    tokenizers.__version__]).encode()
    ).hexdigest()[:16]
    target = root / f"bpe{VOCAB_SIZE}-{'bos' if add_bos else 'nobos'}-{key}"
    if (target / "tokenizer.json").exists():
        return target
    with _file_lock(root / f".{target.name}.lock"):
        if (target / "tokenizer.json").exists():
            return target
        log.info("training a %d-token BPE tokenizer on the standard library", VOCAB_SIZE)
        _build_into(target, lambda tmp: _train_tokenizer(tmp, add_bos))
    return target


def _train_tokenizer(out: Path, add_bos: bool) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS_ID)]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>", clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    # transformers 5 writes its own class name, which transformers 4 (vLLM's pin) cannot read.
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False))


def _model_config(spec: ModelSpec, vocab: int):
    common = dict(
        vocab_size=vocab, bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
        tie_word_embeddings=spec.tie_embeddings, initializer_range=spec.init_std,
    )
    if spec.arch == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(
            hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
            num_key_value_heads=spec.kv_heads, head_dim=spec.head_dim,
            max_position_embeddings=spec.max_positions, rms_norm_eps=1e-5, **common,
        )
    if spec.arch == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(
            hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
            num_key_value_heads=spec.kv_heads, max_position_embeddings=spec.max_positions,
            rms_norm_eps=1e-6, **common,
        )
    if spec.arch == "gpt2":
        from transformers import GPT2Config

        return GPT2Config(
            n_embd=spec.hidden_size, n_layer=spec.layers, n_head=spec.heads,
            n_inner=spec.intermediate_size, n_positions=spec.max_positions, **common,
        )
    raise ValueError(f"unknown test-model arch {spec.arch!r}; known: llama, gpt2, qwen2")


def build_test_model(
    preset: str = "llama-tiny", *, dtype: str = "float32", cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Build (or reuse) a test model; returns its directory (config, weights, tokenizer).

    `preset` is one of `PRESETS` (llama-tiny, gpt2-tiny, qwen2-tiny, llama-quant,
    llama-small) or of `TOOL_PRESETS` (qwen2-tools, llama-tools, mistral-tools: a base
    preset's model with a chat template that renders tools, in the Hermes/Qwen, Llama 3 JSON
    and Mistral formats). The same inputs always give the same weights and tokenizer.
    """
    import torch
    import transformers

    if preset in TOOL_PRESETS:
        return _with_tool_template(preset, dtype, cache_dir)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of "
                         f"{', '.join([*PRESETS, *TOOL_PRESETS])}")
    if dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"dtype {dtype!r}: choose float32, float16 or bfloat16")
    spec = PRESETS[preset]
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    add_bos = spec.arch != "gpt2"
    tok_dir = build_tokenizer(add_bos, root)
    key = hashlib.sha256(
        json.dumps([BUILDER_VERSION, asdict(spec), dtype, tok_dir.name, torch.__version__,
                    transformers.__version__, LEAK_TRAP_GENERATION_CONFIG]).encode()
    ).hexdigest()[:16]
    target = root / "models" / f"{preset}-{dtype}-{key}"
    if (target / "config.json").exists():
        return target
    with _file_lock(root / "models" / f".{target.name}.lock"):
        if (target / "config.json").exists():
            return target
        log.info("building test model %s (%s)", preset, dtype)
        _build_into(target, lambda tmp: _build_model(tmp, spec, dtype, tok_dir))
    return target


def _with_tool_template(preset: str, dtype: str,
                        cache_dir: str | os.PathLike[str] | None) -> Path:
    """The base preset's model, copied, with the tool preset's chat template."""
    base, fmt = TOOL_PRESETS[preset]
    source = build_test_model(base, dtype=dtype, cache_dir=cache_dir)
    template = TOOL_TEMPLATES[fmt]
    key = hashlib.sha256(json.dumps([source.name, template]).encode()).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    target = root / "models" / f"{preset}-{dtype}-{key}"
    if (target / "config.json").exists():
        return target
    with _file_lock(root / "models" / f".{target.name}.lock"):
        if not (target / "config.json").exists():
            _build_into(target, lambda tmp: _copy_with_template(source, tmp, template))
    return target


def _copy_with_template(source: Path, out: Path, template: str) -> None:
    for name in os.listdir(source):
        if name != "chat_template.jinja":
            shutil.copy2(source / name, out / name)
    (out / "chat_template.jinja").write_text(template, encoding="utf-8")
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("chat_template", None)  # the file above is the template
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False))


EOS_PROBE_PROMPTS = ("The quick brown fox", "def main():", "import os", "Hello, world",
                     "class Foo:", "1 2 3", "while True:", "Bonjour")


def _make_eos_reachable(model, tokenizer) -> None:
    import torch

    # For each token: in how many probe continuations it first appears at position 4..31.
    score: dict[int, int] = {}
    with torch.no_grad():
        for prompt in EOS_PROBE_PROMPTS:
            ids = tokenizer.encode(prompt)
            first: dict[int, int] = {}
            for pos in range(32):
                token = int(model(torch.tensor([ids])).logits[0, -1].argmax())
                ids.append(token)
                first.setdefault(token, pos)
            for token, pos in first.items():
                if pos >= 4 and token != EOS_ID:
                    score[token] = score.get(token, 0) + 1
    donor = max(sorted(score), key=lambda t: score[t])  # ties: the smallest id
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head[EOS_ID] = head[donor] * 1.05
    model.config.unillm_eos_donor = donor


def _build_model(out: Path, spec: ModelSpec, dtype: str, tok_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    config = _model_config(spec, len(tokenizer))
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    _make_eos_reachable(model, tokenizer)
    model = model.to(getattr(torch, dtype))
    model.generation_config = GenerationConfig(
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
        **LEAK_TRAP_GENERATION_CONFIG,
    )
    model.save_pretrained(out)
    for name in os.listdir(tok_dir):
        shutil.copy2(tok_dir / name, out / name)


TEST_MODEL_PREFIX = "test:"


def resolve_model(model: str | os.PathLike[str]) -> str:
    """``test:PRESET`` (e.g. ``test:llama-tiny``) builds that test model and returns its path;
    anything else is returned unchanged. Lets every command and example run offline."""
    text = os.fspath(model)
    if text.startswith(TEST_MODEL_PREFIX):
        return str(build_test_model(text[len(TEST_MODEL_PREFIX):]))
    return text
