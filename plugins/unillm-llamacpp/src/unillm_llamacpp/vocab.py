"""A Hugging Face byte-level BPE tokenizer, written into a GGUF file for llama.cpp.

The tokenizer written is the one transformers actually uses, not tokenizer.json as stored:
transformers 5 rebuilds some tokenizers by model type (a qwen2 checkpoint gets Qwen2's
pre-tokenizer regex and NFC normalizer whatever its tokenizer.json says), and every other engine
and the reference tokenize through transformers. So the definition is read back from the loaded
tokenizer's backend, and whether it adds bos/eos is observed by encoding a probe.

llama.cpp re-implements tokenizers natively and picks its pre-tokenizer (the regex that splits
text before BPE) by name, `tokenizer.ggml.pre`. llama.cpp's own converter recognises a tokenizer
by hashing its output on a probe text and refuses tokenizers it has not seen; this one maps the
pre-tokenizer's definition to llama.cpp's name, so freshly trained tokenizers (the test models')
convert too. Only definitions whose llama.cpp counterpart is known are accepted; anything else
is an error naming what was found, never a guess that would tokenize differently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# (pre_tokenizer definition, allowed normalizers) -> llama.cpp's pre-tokenizer name. A dict
# matches when every key given here is equal; a list matches element by element.
_PRE_TOKENIZERS: list[tuple[dict[str, Any], tuple[str | None, ...], str]] = [
    # GPT-2's byte-level regex ('s|'t|...| ?\p{L}+| ?\p{N}+|...): llama.cpp's "gpt-2"
    ({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}, (None,), "gpt-2"),
    # Qwen2: a Split on its own regex, then bytes. llama.cpp does not NFC-normalize (as for
    # the Qwen2 models llama.cpp's own converter writes): text that is not already NFC may
    # tokenize differently.
    ({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False},
    ]}, (None, "NFC"), "qwen2"),
]


class UnsupportedTokenizerError(ValueError):
    """The tokenizer is not one the converter can express for llama.cpp exactly."""


@dataclass(frozen=True)
class Vocab:
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    pre: str
    add_bos: bool
    add_eos: bool
    special_ids: dict[str, int]
    chat_template: str | None


def _matches(value: Any, pattern: Any) -> bool:
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(_matches(value.get(k), v) for k, v in pattern.items())
    if isinstance(pattern, list):
        return (isinstance(value, list) and len(value) == len(pattern)
                and all(_matches(v, p) for v, p in zip(value, pattern)))
    return value == pattern


def _pre_tokenizer(definition: dict[str, Any], where: Path) -> str:
    pre = definition.get("pre_tokenizer") or {}
    normalizer = (definition.get("normalizer") or {}).get("type")
    for pattern, normalizers, name in _PRE_TOKENIZERS:
        if _matches(pre, pattern) and normalizer in normalizers:
            return name
    raise UnsupportedTokenizerError(
        f"{where}: the tokenizer (pre-tokenizer {json.dumps(pre)}, normalizer {normalizer}) has "
        "no known llama.cpp counterpart; supported: GPT-2 style ByteLevel, Qwen2's regex"
    )


def _merges(model: dict[str, Any]) -> list[str]:
    """Merges as llama.cpp reads them: "a b" strings (a space inside a token as U+0120+...)."""
    merges = model.get("merges") or []
    if merges and isinstance(merges[0], list):  # tokenizers >= 0.20 writes pairs
        return [" ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part)
                         for part in pair) for pair in merges]
    return list(merges)


def load_tokenizer(model_dir: Path):
    """The tokenizer of `model_dir` as transformers loads it."""
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise UnsupportedTokenizerError(
            "converting a Hugging Face directory needs transformers, to read its tokenizer as "
            "every other engine does: pip install 'unillm-llamacpp[hf]'"
        ) from exc
    tok = AutoTokenizer.from_pretrained(model_dir)
    if getattr(tok, "backend_tokenizer", None) is None:
        raise UnsupportedTokenizerError(f"{model_dir}: not a fast (tokenizers) tokenizer")
    return tok


def read_vocab(model_dir: Path, vocab_size: int) -> Vocab:
    """Everything llama.cpp needs to tokenize exactly as transformers does."""
    import gguf

    hf = load_tokenizer(model_dir)
    definition = json.loads(hf.backend_tokenizer.to_str())
    model = definition.get("model", {})
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise UnsupportedTokenizerError(
            f"{model_dir}: tokenizer model {model.get('type')!r} (byte_fallback="
            f"{model.get('byte_fallback')}) is not a byte-level BPE"
        )
    if model.get("ignore_merges"):
        raise UnsupportedTokenizerError(f"{model_dir}: BPE with ignore_merges is not supported")
    pre = _pre_tokenizer(definition, model_dir)

    by_id: dict[int, str] = {int(i): t for t, i in model["vocab"].items()}
    added = {int(a["id"]): a for a in definition.get("added_tokens", [])}
    for i, a in added.items():
        by_id[i] = a["content"]
    if max(by_id) >= vocab_size:
        raise UnsupportedTokenizerError(
            f"{model_dir}: token id {max(by_id)} does not fit the model's vocab_size {vocab_size}"
        )
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")  # rows the model has but the tokenizer never produces
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if added[i].get("special")
                         else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)

    probe = hf.encode("a")  # observed, not inferred from the post-processor's definition
    special_ids = {
        kind: int(i) for kind in ("bos", "eos", "unk", "pad")
        if (i := getattr(hf, f"{kind}_token_id", None)) is not None
    }
    add_bos = "bos" in special_ids and probe[:1] == [special_ids["bos"]]
    add_eos = "eos" in special_ids and probe[-1:] == [special_ids["eos"]]
    template = getattr(hf, "chat_template", None)
    return Vocab(tokens, types, _merges(model), pre, add_bos, add_eos, special_ids,
                 template if isinstance(template, str) else None)


def write_vocab(writer: Any, model_dir: Path, vocab_size: int) -> Vocab:
    """Add the tokenizer (tokens, merges, special ids, chat template) to a GGUFWriter."""
    vocab = read_vocab(model_dir, vocab_size)
    if not vocab.merges:
        raise UnsupportedTokenizerError(f"{model_dir}: the BPE tokenizer has no merges")
    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_merges(vocab.merges)
    for kind, token_id in vocab.special_ids.items():
        getattr(writer, f"add_{kind}_token_id")(token_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)
    return vocab
