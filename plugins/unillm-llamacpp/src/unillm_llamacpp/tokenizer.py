"""unillm's `Tokenizer` protocol over llama.cpp's own tokenizer (for a bare .gguf file).

When the model comes as a Hugging Face directory the engine uses that directory's tokenizer
(unillm.tokenizer.HFTokenizer), so prompts are tokenized exactly as on every other engine. A
.gguf file has only llama.cpp's tokenizer, and this adapter gives it unillm's semantics:

- `encode` adds bos the way the model's metadata says and parses special tokens written in the
  text (as Hugging Face tokenizers do);
- `decode` concatenates the tokens' bytes, special tokens skipped (`decode_with_special`
  writes them), with none of the clean-up
  llama.cpp's `llama_detokenize` applies to BPE vocabularies (" ." -> ".") and none of
  llama-cpp-python's removal of a leading space after bos: decoding must be prefix-stable for
  incremental detokenizing, so streamed text equals batch text;
- end of sequence is every token llama.cpp itself treats as end of generation (eos, eot, ...);
- chat renders the model's `tokenizer.chat_template` with llama-cpp-python's Jinja2 formatter
  (the same sandbox and extensions as transformers), tools included.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from typing import Any

from unillm import UnillmError


class GGUFTokenizer:
    """Wraps a loaded `llama_cpp.Llama`."""

    def __init__(self, llm: Any):
        import llama_cpp

        self._lib = llama_cpp
        self.llm = llm
        self._vocab = llm._model.vocab
        self.vocab_size = llm.n_vocab()  # valid ids are below it (a server checks prompts)
        self.eos_token_ids = frozenset(
            i for i in range(self.vocab_size) if llama_cpp.llama_vocab_is_eog(self._vocab, i)
        )
        self._pieces: dict[int, bytes] = {}
        self._special_pieces: dict[int, bytes] = {}
        self._buffer = ctypes.create_string_buffer(256)
        self.chat_template: str | None = llm.metadata.get("tokenizer.chat_template")

    def _text(self, token_id: int) -> str:
        if token_id < 0:
            return ""
        return self._lib.llama_vocab_get_text(self._vocab, token_id).decode("utf-8", "replace")

    def _piece(self, token_id: int, special: bool = False) -> bytes:
        """The token's bytes; control tokens have none unless `special` (then their text)."""
        cache = self._special_pieces if special else self._pieces
        piece = cache.get(token_id)
        if piece is None:
            n = self._lib.llama_token_to_piece(self._vocab, token_id, self._buffer,
                                               len(self._buffer), 0, special)
            if n < 0:  # longer than the buffer: llama.cpp returns minus the needed size
                self._buffer = ctypes.create_string_buffer(-n)
                n = self._lib.llama_token_to_piece(self._vocab, token_id, self._buffer,
                                                   len(self._buffer), 0, special)
            piece = cache[token_id] = self._buffer.raw[:n]
        return piece

    def encode(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def encode_plain(self, text: str) -> list[int]:
        """Ids of `text` without bos and without parsing special tokens (a banned word)."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def llguidance_tokenizer(self):
        """This vocabulary for unillm's grammar engine (structured output): each token's bytes,
        control tokens (no bytes) marked special."""
        import llguidance

        tokens = [self._piece(i) for i in range(self.vocab_size)]
        special = [i for i, t in enumerate(tokens) if not t] + sorted(self.eos_token_ids)
        eos = min(self.eos_token_ids) if self.eos_token_ids else 0
        tokens = [t or f"<|special_{i}|>".encode() for i, t in enumerate(tokens)]
        llm = self.llm
        wrapper = type("GGUFVocab", (), {
            "eos_token_id": eos, "bos_token_id": None, "tokens": tokens,
            "special_token_ids": sorted(set(special)), "is_tokenizer_wrapper": True,
            "__call__": lambda self, text: llm.tokenize(
                text if isinstance(text, bytes) else text.encode("utf-8"),
                add_bos=False, special=False),
        })()
        return llguidance.LLTokenizer(llguidance.TokenizerWrapper(wrapper),
                                      eos_token=sorted(self.eos_token_ids) or None)

    def decode(self, ids: Sequence[int]) -> str:
        return b"".join(self._piece(int(i)) for i in ids).decode("utf-8", errors="replace")

    def decode_with_special(self, ids: Sequence[int]) -> str:
        """`decode` keeping control tokens as their text (`skip_special_tokens=False`)."""
        return b"".join(self._piece(int(i), True) for i in ids).decode("utf-8", errors="replace")

    def chat_text(self, messages: Sequence[Mapping[str, Any]],
                  tools: Sequence[Mapping[str, Any]] | None = None) -> str:
        if not self.chat_template:
            raise UnillmError(
                "this GGUF file has no tokenizer.chat_template: use generate() with a text prompt"
            )
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        from unillm.tools.messages import for_template

        lib, vocab = self._lib, self._vocab
        formatter = Jinja2ChatFormatter(
            self.chat_template, eos_token=self._text(lib.llama_vocab_eos(vocab)),
            bos_token=self._text(lib.llama_vocab_bos(vocab)), add_generation_prompt=True,
        )
        return formatter(messages=for_template(messages),
                         tools=[dict(t) for t in tools] if tools else None).prompt

    def chat_token_ids(self, messages: Sequence[Mapping[str, Any]],
                       tools: Sequence[Mapping[str, Any]] | None = None) -> list[int]:
        # The rendered template already holds bos where the model wants it.
        return self.llm.tokenize(self.chat_text(messages, tools).encode("utf-8"), add_bos=False,
                                 special=True)

    def special_token_id(self, text: str) -> int | None:
        """The control token spelled `text` (a tool-call marker such as [TOOL_CALLS]), if any."""
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if len(ids) == 1 and not self._piece(ids[0]) and self._text(ids[0]) == text:
            return ids[0]
        return None
