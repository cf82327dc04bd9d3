"""The one grammar engine behind every in-process engine: llguidance.

A `Structured` constraint is compiled once per (constraint, tokenizer) into llguidance's
grammar and checked there, so an unsupported JSON-schema keyword is an error naming it before
anything runs. Each sample then gets a `RowMatcher`: before every step it says which token
ids may come next, and it advances with the token the engine sampled. Engines only apply the
mask to their logits (`mask_logits_torch`, or `allowed_ids` for a pure-Python engine), so
"valid" means the same on each. llguidance is pinned to the version vLLM's own structured
outputs use in this project's vLLM environment (constraints/cpu.txt, constraints/vllm-cpu.txt).

Why llguidance (measured by benchmarks/grammar_libraries.py against xgrammar and
outlines-core on this suite's constraints; docs/structured.md has the figures): it covers JSON
schema, regexes and a context-free grammar with one API and names what it cannot enforce
(outlines-core has no grammars and ignores integer bounds; xgrammar lets control characters
into JSON strings), it compiles lazily (milliseconds where the others take seconds on a 128k
vocabulary), and its masks cost the same order as theirs (tens to ~150 microseconds here).

`text_complete` decides `Sample.complete` on a sample's final text, with the constraint
compiled for a vocabulary of bytes, so every engine (and stream and batch) agree.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import EngineUnavailableError, InvalidParameterError
from .structured import Structured
from .timing import now

LIBRARY = "llguidance"
INSTALL_HINT = 'pip install "unillm[structured]"'


def _llguidance():
    try:
        import llguidance
    except ImportError as exc:
        raise EngineUnavailableError("structured output", "llguidance is not installed",
                                     INSTALL_HINT) from exc
    return llguidance


def grammar_source(structured: Structured) -> str:
    """llguidance's grammar (its JSON form) for the constraint, not yet checked."""
    LLMatcher = _llguidance().LLMatcher
    kind = structured.kind
    if kind == "json_schema":
        schema = structured.json_schema
        if schema is True:
            schema = {}
        options = {"whitespace_flexible": structured.whitespace == "flexible"}
        if structured.whitespace == "compact":
            options["item_separator"] = ","
            options["key_separator"] = ":"
        try:
            return LLMatcher.grammar_from_json_schema(schema, defaults=options)
        except ValueError as exc:
            raise InvalidParameterError("json_schema", schema, f"a JSON Schema object ({exc})",
                                        owner="Structured") from None
    if kind == "regex":
        return LLMatcher.grammar_from_regex(structured.regex)
    if kind == "choice":
        lark = "start: " + " | ".join(_lark_string(c) for c in structured.choice or ())
        return LLMatcher.grammar_from_lark(lark)
    return LLMatcher.grammar_from_lark(structured.grammar or "")


def _lark_string(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


_tokenizers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_tokenizers_lock = threading.Lock()


def ll_tokenizer(tokenizer: Any, vocab_size: int | None = None):
    """The llguidance tokenizer of a unillm tokenizer (cached per tokenizer object): from its
    Hugging Face tokenizer, or from its own `llguidance_tokenizer()`."""
    with _tokenizers_lock:
        hit = _tokenizers.get(tokenizer)
        if hit is not None:
            return hit
    llg = _llguidance()
    eos = sorted(tokenizer.eos_token_ids)
    if hasattr(tokenizer, "llguidance_tokenizer"):
        made = tokenizer.llguidance_tokenizer()
    elif hasattr(tokenizer, "hf"):
        import llguidance.hf

        made = llguidance.hf.from_tokenizer(tokenizer.hf, n_vocab=vocab_size,
                                            eos_token=eos or None)
    else:
        raise InvalidParameterError(
            "structured", None, "an engine whose tokenizer llguidance can read (a Hugging Face "
            "tokenizer, or one with llguidance_tokenizer())", owner="SamplingParams")
    del llg
    with _tokenizers_lock:
        _tokenizers[tokenizer] = made
    return made


@dataclass(frozen=True)
class Compiled:
    """A checked grammar for one tokenizer, and what compiling it cost."""

    grammar: str
    tokenizer: Any
    compile_s: float
    _pristine: list = field(default_factory=list, repr=False, compare=False)
    _lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

    def matcher(self):
        """A new llguidance matcher at the start of the grammar: a copy of one made once
        (copying costs a microsecond, making one a few hundred)."""
        with self._lock:
            if not self._pristine:
                self._pristine.append(_llguidance().LLMatcher(self.tokenizer, self.grammar,
                                                              log_level=0))
            return self._pristine[0].deep_copy()


_compiled: dict[tuple[str, int], Compiled] = {}
_compiled_lock = threading.Lock()


def compile_constraint(structured: Structured, tokenizer: Any,
                       vocab_size: int | None = None) -> Compiled:
    """The constraint compiled for `tokenizer`, cached by (constraint, tokenizer). Raises
    `InvalidParameterError` naming what llguidance cannot do (an unsupported JSON-schema
    keyword, a bad regex or grammar)."""
    lltok = ll_tokenizer(tokenizer, vocab_size)
    key = (structured.key, id(lltok))
    with _compiled_lock:
        hit = _compiled.get(key)
    if hit is not None:
        return hit
    LLMatcher = _llguidance().LLMatcher
    start = now()
    source = grammar_source(structured)
    is_error, messages = LLMatcher.validate_grammar_with_warnings(source, lltok)
    if is_error:
        raise InvalidParameterError(structured.kind, _shown(structured),
                                    f"something llguidance can compile: {messages[0]}",
                                    owner="Structured")
    compiled = Compiled(source, lltok, now() - start)
    with _compiled_lock:
        if len(_compiled) > 512:
            _compiled.clear()
        _compiled[key] = compiled
    return compiled


def _shown(structured: Structured) -> Any:
    value = getattr(structured, structured.kind)
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


class RowMatcher:
    """One sample's position in its constraint."""

    def __init__(self, compiled: Compiled):
        self.compiled = compiled
        self.matcher = compiled.matcher()
        self.mask_s = 0.0  # time spent computing masks
        self.steps = 0
        self.ended = False  # the engine ended this sample: no more masks

    def advance(self, token: int) -> None:
        """The engine sampled `token` (always one the mask allowed)."""
        if self.ended:
            return
        if self.matcher.is_stopped() or not self.matcher.consume_token(int(token)):
            self.ended = True  # end of sequence (or a token after the end): nothing follows

    @property
    def complete(self) -> bool:
        """The text so far is a whole sentence of the constraint."""
        return self.matcher.is_accepting()

    def fill(self, bitmask: Any, row: int) -> None:
        """Write the allowed next tokens into row `row` of an llguidance torch bitmask."""
        import llguidance.torch

        start = now()
        llguidance.torch.fill_next_token_bitmask(self.matcher, bitmask, row)
        self.mask_s += now() - start
        self.steps += 1

    def allowed_numpy(self, vocab: int):
        """The allowed next tokens as a boolean numpy array of `vocab` entries."""
        import numpy as np

        start = now()
        mask = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        allowed = np.unpackbits(mask, bitorder="little")[:vocab].astype(bool)
        if len(allowed) < vocab:  # ids beyond the grammar's vocabulary are never allowed
            allowed = np.concatenate([allowed, np.zeros(vocab - len(allowed), dtype=bool)])
        self.mask_s += now() - start
        self.steps += 1
        return allowed

    def allowed_ids(self) -> list[int]:
        """The allowed next token ids (for engines without tensors)."""
        start = now()
        mask = self.matcher.compute_bitmask()
        self.mask_s += now() - start
        self.steps += 1
        return [i for i in range(len(mask) * 8) if mask[i >> 3] >> (i & 7) & 1]


class _Bytes:
    """A vocabulary of the 256 bytes (plus an end token): the constraint compiled for it
    reads any text, whatever tokenizer wrote it."""

    eos_token_ids = frozenset({256})
    vocab_size = 257

    def llguidance_tokenizer(self):
        import llguidance

        wrapper = type("ByteVocab", (), {
            "eos_token_id": 256, "bos_token_id": None,
            "tokens": [bytes([i]) for i in range(256)] + [b"</s>"], "special_token_ids": [256],
            "is_tokenizer_wrapper": True,
            "__call__": lambda self, text: list(text.encode("utf-8") if isinstance(text, str)
                                                else text),
        })()
        return llguidance.LLTokenizer(llguidance.TokenizerWrapper(wrapper), slices=[])


BYTES = _Bytes()


def text_complete(structured: Structured, text: str) -> bool:
    """Whether `text`, all of it, is a sentence of the constraint (`Sample.complete`).

    Decided on the text, whatever engine wrote it (a server's text included), by the same
    grammar compiled for a vocabulary of bytes, so a streamed and a batch result agree."""
    matcher = compile_constraint(structured, BYTES).matcher()
    data = text.encode("utf-8")
    return (not data or matcher.consume_tokens(list(data))) and matcher.is_accepting() \
        and not matcher.is_error()


def matchers(structured: Structured | None, tokenizer: Any, rows: int,
             vocab_size: int | None = None) -> list[RowMatcher] | None:
    """One matcher per row of a request's samples, or None without a constraint."""
    if structured is None:
        return None
    compiled = compile_constraint(structured, tokenizer, vocab_size)
    return [RowMatcher(compiled) for _ in range(rows)]


def mask_logits_torch(scores: Any, rows: Sequence[RowMatcher | None], last: Sequence[int] | None) -> None:
    """Apply each row's mask to `scores` (rows x vocab) in place, after advancing it by the
    row's `last` sampled token (None at the first step). Rows without a matcher, or whose
    sample ended, are left alone."""
    import llguidance.torch
    import numpy as np
    import torch

    live = [r for r in rows if r is not None]
    if not live:
        return
    if last is not None:
        for row, matcher in zip(last, rows):
            if matcher is not None:
                matcher.advance(row)
    vocab = live[0].compiled.tokenizer.vocab_size
    bitmask = llguidance.torch.allocate_token_bitmask(len(rows), vocab)
    for i, matcher in enumerate(rows):
        if matcher is not None and not matcher.ended:
            matcher.fill(bitmask, i)
    # Unpacked here rather than with llguidance.torch.apply_token_bitmask_inplace, whose
    # kernel is torch.compile'd: on CPU the compile costs seconds and recompiles with shapes.
    bits = np.unpackbits(bitmask.numpy().view(np.uint8), axis=1, bitorder="little")
    allowed = torch.from_numpy(bits[:, :vocab]).to(scores.device, dtype=torch.bool)
    width = min(vocab, scores.shape[1])
    scores[:, :width].masked_fill_(~allowed[:, :width], float("-inf"))
    if scores.shape[1] > vocab:  # logits beyond the tokenizer's vocabulary: never allowed
        scores[:, vocab:] = float("-inf")


@functools.lru_cache(maxsize=1)
def library_version() -> str:
    from importlib.metadata import version

    return version(LIBRARY)
