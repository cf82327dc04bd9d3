"""The reference every engine is compared with: plain argmax decoding, written out here.

It calls the float32 model's forward pass directly (no `generate`, no cache, no generation
config), so it cannot share a bug with any engine, and it stops at the end-of-sequence token.
The test models' `generation_config.json` is booby-trapped (top_k 5, temperature 0.7,
repetition penalty 1.3, max_length 12, do_sample: see unillm/testing/models.py): an engine that
lets a checkpoint's defaults leak into generation leaves this reference, and the greedy-parity
checks fail instead of passing silently. torch and transformers are imported on first use.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=8)
def _model(path: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(path)


def greedy_ids(path: str, prompt_ids: tuple[int, ...], max_tokens: int,
               repetition_penalty: float = 1.0, penalize_prompt: bool = True) -> list[int]:
    """Greedy continuation of `prompt_ids`, including the eos token if it comes.

    `repetition_penalty` is the CTRL paper's, as unillm defines it: every token already in the
    prompt or the output has its logit divided by the penalty (multiplied, if negative).
    `penalize_prompt=False` computes the wrong variant (output tokens only), which the suite
    uses to make sure its prompt tells the two apart.
    """
    return list(_greedy_ids(path, tuple(prompt_ids), max_tokens, repetition_penalty,
                            penalize_prompt))


@functools.lru_cache(maxsize=None)
def _greedy_ids(path: str, prompt_ids: tuple[int, ...], max_tokens: int,
                repetition_penalty: float, penalize_prompt: bool) -> tuple[int, ...]:
    # Cached: every target asks for the same continuations, and this loop re-runs the whole
    # sequence at every step.
    import torch

    model, tok = _model(path)
    ids = list(prompt_ids)
    out: list[int] = []
    with torch.no_grad():
        for _ in range(max_tokens):
            logits = model(torch.tensor([ids])).logits[0, -1]
            if repetition_penalty != 1.0:
                seen = ids if penalize_prompt else ids[len(prompt_ids):]
                if seen:
                    index = torch.tensor(sorted(set(seen)))
                    score = logits[index]
                    logits[index] = torch.where(score < 0, score * repetition_penalty,
                                                score / repetition_penalty)
            token = int(logits.argmax())
            out.append(token)
            ids.append(token)
            if token == tok.eos_token_id:
                break
    return tuple(out)


def ranks(path: str, prompt_ids: tuple[int, ...], output_ids: tuple[int, ...],
          ) -> list[tuple[int, float]]:
    """For each output token, under the float32 model given everything before it: how many
    tokens were more likely (its rank, 0 for the argmax), and their total probability (a token
    outside a top-p nucleus has at least p of it)."""
    import torch

    model, _ = _model(path)
    ids = list(prompt_ids) + list(output_ids)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    found = []
    for i, token in enumerate(output_ids):
        row = logits[len(prompt_ids) - 1 + i]
        above = row > row[token]
        found.append((int(above.sum()), float(torch.softmax(row, -1)[above].sum())))
    return found


def encode(path: str, text: str) -> tuple[int, ...]:
    """Prompt ids of `text` (with bos where the model uses one), as every engine gets them."""
    return tuple(_model(path)[1].encode(text))


def decode(path: str, ids: list[int] | tuple[int, ...]) -> str:
    """Text of `ids`, special tokens skipped (what a text engine's server should send)."""
    return _model(path)[1].decode(list(ids), skip_special_tokens=True)


def eos_id(path: str) -> int:
    return _model(path)[1].eos_token_id
