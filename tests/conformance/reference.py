"""The reference every engine is compared with: plain argmax decoding, written out here.

It calls the float32 model's forward pass directly (no `generate`, no cache, no generation
config), so it cannot share a bug with any engine, and it stops at the end-of-sequence token.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=8)
def _model(path: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(path)


def greedy_ids(path: str, prompt_ids: tuple[int, ...], max_tokens: int) -> list[int]:
    """Greedy continuation of `prompt_ids`, including the eos token if it comes."""
    import torch

    model, tok = _model(path)
    ids = list(prompt_ids)
    out: list[int] = []
    with torch.no_grad():
        for _ in range(max_tokens):
            token = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            out.append(token)
            ids.append(token)
            if token == tok.eos_token_id:
                break
    return out


def encode(path: str, text: str) -> tuple[int, ...]:
    return tuple(_model(path)[1].encode(text))


def eos_id(path: str) -> int:
    return _model(path)[1].eos_token_id
