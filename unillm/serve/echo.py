"""`/v1/completions` with ``echo`` and vLLM's ``prompt_logprobs``: the prompt, and its tokens'
log-probabilities, in the response, as vLLM's server returns them (lm-eval's
``local-completions`` model reads log-likelihoods from exactly this).

With ``echo``, each choice's ``text`` is the prompt followed by the completion (the prompt
alone with ``max_tokens: 0``), and with ``logprobs: k`` its legacy ``logprobs`` object starts
with one entry per prompt token: the token's text, its log-probability (null for the first
token, which nothing precedes), its ``top_logprobs`` (the token itself and the k most likely
tokens; null first) and its ``text_offset``; the completion's entries follow, their offsets
after the prompt's. vLLM's ``prompt_logprobs`` field, when asked for, adds to each choice the
prompt's entries keyed by token id: ``{"logprob", "rank", "decoded_token"}``, null first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..results import Completion, TokenLogprob
from .mapping import Mapped
from .responses import TokenText, completion_logprobs


def prompt_text(completion: Completion, decode: Any) -> str:
    """The prompt as text: as sent, or its token ids decoded (special tokens skipped)."""
    if completion.prompt is not None:
        return completion.prompt
    return decode(list(completion.prompt_token_ids or ())) if decode is not None else ""


def prompt_entries(completion: Completion, text: TokenText) -> dict[str, list[Any]]:
    """The legacy logprobs lists of the prompt's tokens (first entry null)."""
    ids = list(completion.prompt_token_ids or ())
    lps = list(completion.prompt_logprobs or [None] * len(ids))
    tokens, values, tops, offsets = [], [], [], []
    offset = 0
    for token_id, lp in zip(ids, lps):
        piece = text(token_id)
        tokens.append(piece)
        offsets.append(offset)
        offset += len(piece)
        if lp is None:
            values.append(None)
            tops.append(None)
            continue
        values.append(lp.logprob)
        top = {piece: lp.logprob}
        top.update({text(t): v for t, v in lp.top.items()})
        tops.append(top)
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops,
            "text_offset": offsets}


def vllm_prompt_logprobs(lps: Sequence[TokenLogprob | None], text: TokenText) -> list[Any]:
    """vLLM's ``prompt_logprobs`` field: per prompt token, its entry and the top ones by id."""
    out: list[Any] = []
    for lp in lps:
        if lp is None:
            out.append(None)
            continue
        entry = {str(lp.token_id): {"logprob": lp.logprob, "rank": lp.rank,
                                    "decoded_token": text(lp.token_id)}}
        ranked = sorted(lp.top.items(), key=lambda kv: -kv[1])
        for rank, (token_id, value) in enumerate(ranked, start=1):
            entry.setdefault(str(token_id), {"logprob": value, "rank": rank,
                                             "decoded_token": text(token_id)})
        out.append(entry)
    return out


def apply(body: dict[str, Any], completions: Sequence[Completion], mapped: Mapped,
          text: TokenText, decode: Any) -> None:
    """Echo the prompts into a whole `/v1/completions` response (see the module docstring)."""
    n = mapped.params.n
    generated = 0
    for p, completion in enumerate(completions):
        head = prompt_text(completion, decode) if mapped.echo else ""
        entries = prompt_entries(completion, text) if mapped.echo else None
        for sample in completion.samples:
            choice = body["choices"][p * n + sample.index]
            if mapped.prompt_logprobs:
                choice["prompt_logprobs"] = vllm_prompt_logprobs(
                    completion.prompt_logprobs or (), text)
            if not mapped.echo:
                continue
            if mapped.echo_only:
                choice["text"] = head
                choice["finish_reason"] = "length"
                choice["stop_reason"] = None
            else:
                choice["text"] = head + choice["text"]
                generated += sample.timing.output_tokens
            if choice.get("logprobs") is not None and entries is not None:
                own = [] if mapped.echo_only else list(sample.logprobs or ())
                offset = sum(len(t) for t in entries["tokens"])
                tail = completion_logprobs(own, text, offset)
                choice["logprobs"] = {k: entries[k] + tail[k] for k in entries}
    if mapped.echo_only:
        usage = body["usage"]
        usage["completion_tokens"] = generated
        usage["total_tokens"] = usage["prompt_tokens"] + generated
