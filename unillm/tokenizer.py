"""An adapter from a Hugging Face tokenizer to unillm's `Tokenizer` protocol.

Shared by every engine that runs a Hugging Face checkpoint (transformers, CTranslate2, vLLM,
llama.cpp's converter), so that prompt ids, detokenizing and chat templates are the same
whichever engine runs the model. Takes an already-loaded tokenizer: importing this module
imports no library.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import UnillmError


class HFTokenizer:
    """Wraps a `transformers` tokenizer. Decoding skips special tokens (`decode_with_special`
    keeps them) and never cleans up spaces, so that decoding is prefix-stable and streamed text
    equals batch text."""

    def __init__(self, hf_tokenizer: Any, extra_eos_ids: Iterable[int] = ()):
        self.hf = hf_tokenizer
        eos = set(extra_eos_ids)
        if hf_tokenizer.eos_token_id is not None:
            eos.add(int(hf_tokenizer.eos_token_id))
        self.eos_token_ids = frozenset(eos)
        # The Rust backend is what a fast tokenizer calls, minus the Python overhead.
        self._backend = getattr(hf_tokenizer, "_tokenizer", None)
        self._backend_decode = getattr(self._backend, "decode", None)

    @classmethod
    def from_pretrained(cls, path: str, extra_eos_ids: Iterable[int] = (), **kwargs: Any) -> HFTokenizer:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(path, **kwargs), extra_eos_ids)

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added tokens included (valid ids are below it)."""
        return len(self.hf)

    @property
    def bos_token_id(self) -> int | None:
        """The model's start token, even where encoding does not add it (GPT-2): what an empty
        context stands for when scoring (as lm-eval's prefix token)."""
        return self.hf.bos_token_id

    @property
    def pad_token_id(self) -> int | None:
        pad = self.hf.pad_token_id
        if pad is None:
            pad = self.hf.eos_token_id
        return pad

    def encode(self, text: str) -> list[int]:
        if self._backend is not None:
            return self._backend.encode(text, add_special_tokens=True).ids
        return list(self.hf.encode(text, add_special_tokens=True))

    def encode_plain(self, text: str) -> list[int]:
        """Ids of `text` without special tokens (a word to ban, a choice to score)."""
        return list(self.hf.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        if self._backend_decode is not None:
            return self._backend_decode(list(ids), skip_special_tokens=True)
        return self.hf.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def decode_with_special(self, ids: Sequence[int]) -> str:
        """`decode` keeping special tokens, written as the vocabulary writes them (for
        `SamplingParams.skip_special_tokens=False`); as prefix-stable as `decode`."""
        if self._backend_decode is not None:
            return self._backend_decode(list(ids), skip_special_tokens=False)
        return self.hf.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def chat_text(self, messages: Sequence[Mapping[str, Any]],
                  tools: Sequence[Mapping[str, Any]] | None = None) -> str:
        """The conversation through the model's chat template, with `tools` (OpenAI's format)
        where given; tool calls and tool replies in the history render as the template
        expects them (`tools.messages.for_template`)."""
        if not getattr(self.hf, "chat_template", None):
            raise UnillmError(
                "this model's tokenizer has no chat template: use generate() with a text "
                "prompt, or set tokenizer.chat_template"
            )
        from .tools.messages import for_template

        extra = {"tools": [dict(t) for t in tools]} if tools else {}
        return self.hf.apply_chat_template(
            for_template(messages), add_generation_prompt=True, tokenize=False, **extra
        )

    def chat_token_ids(self, messages: Sequence[Mapping[str, Any]],
                       tools: Sequence[Mapping[str, Any]] | None = None) -> list[int]:
        # The rendered template already holds bos where the model wants it.
        return list(self.hf.encode(self.chat_text(messages, tools), add_special_tokens=False))

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """Vocabulary strings of ids (what CTranslate2 takes as input)."""
        return self.hf.convert_ids_to_tokens(list(ids))
