"""A stand-in for Hugging Face TGI: its native HTTP protocol over a real model.

No real TGI can run on this machine (its server needs Rust/CUDA builds or its docker image), so
the `tgi` engine is tested against this: TGI's request schema and validation rules (greedy is
``do_sample: false`` with no temperature, temperature > 0, 0 < top_p < 1, top_k > 0), its
``/info``, ``/generate`` and ``/generate_stream`` answers (finish reasons ``length`` /
``eos_token``, ``generated_tokens`` counting the eos token, the end-of-sequence token streamed
as a special token, the last stream event carrying ``generated_text`` and ``details``), and its
``x-prompt-tokens`` header, all computed by unillm's transformers engine running the test model.

Its ``grammar`` parameter (``{"type": "json" | "regex", "value": ...}``) is unillm's
`structured` (JSON written compact: TGI allows an optional space between tokens, none is one
of the texts it may return).

With ``decoder_input_details`` (not streamed, as TGI), ``details.prefill`` holds each prompt
token (the start token included) with its text, decoded one token at a time with special
tokens kept, and its log-probability (null for the first), computed by the transformers
engine's scoring of the prompt.

Not implemented here (422, as TGI answers an invalid request): stop sequences, typical_p,
frequency_penalty, watermark, best_of > 1, top_n_tokens. Generated tokens' logprobs
are null.
"""

# (no `from __future__ import annotations`: FastAPI reads the handlers' annotations at run time)

import json
import random
from typing import Any

import unillm
from unillm import SamplingParams


class Invalid(Exception):
    """A request TGI would refuse with 422 (error_type "validation")."""


def sampling_params(parameters: dict[str, Any]) -> tuple[SamplingParams, int | None]:
    """TGI's parameters -> unillm's, with TGI's validation rules; also the seed used."""
    p = dict(parameters or {})
    for name in ("typical_p", "frequency_penalty", "top_n_tokens"):
        if p.get(name) not in (None, 0, 0.0):
            raise Invalid(f"`{name}` is not implemented in this TGI stand-in")
    if p.get("stop"):
        raise Invalid("stop sequences are not implemented in this TGI stand-in")
    if p.get("watermark"):
        raise Invalid("watermark is not implemented in this TGI stand-in")
    if (p.get("best_of") or 1) > 1:
        raise Invalid("best_of > 1 is not implemented in this TGI stand-in")
    temperature, top_p, top_k = p.get("temperature"), p.get("top_p"), p.get("top_k")
    sampling = bool(p.get("do_sample")) or any(v is not None for v in (temperature, top_p, top_k))
    if temperature is not None and temperature <= 0:
        raise Invalid("`temperature` must be strictly positive")
    if top_p is not None and not 0 < top_p < 1:
        raise Invalid("`top_p` must be > 0.0 and < 1.0")
    if top_k is not None and top_k <= 0:
        raise Invalid("`top_k` must be strictly positive")
    penalty = p.get("repetition_penalty")
    if penalty is not None and penalty <= 0:
        raise Invalid("`repetition_penalty` must be strictly positive")
    max_new = p.get("max_new_tokens")
    if max_new is not None and max_new <= 0:
        raise Invalid("`max_new_tokens` must be strictly positive")
    seed = p.get("seed")
    if sampling and seed is None:
        seed = random.randrange(2**32)  # TGI picks one and reports it in details
    fields: dict[str, Any] = {
        "max_tokens": max_new or 100,
        "temperature": (temperature if temperature is not None else 1.0) if sampling else 0.0,
        "repetition_penalty": penalty if penalty is not None else 1.0,
    }
    if sampling:
        fields.update(top_p=top_p if top_p is not None else 1.0, top_k=top_k, seed=seed)
    grammar = p.get("grammar")
    if grammar is not None:  # TGI's {"type": "json" | "regex", "value": ...}
        kind, value = (grammar or {}).get("type"), (grammar or {}).get("value")
        if kind == "json":  # TGI's grammar allows one optional space between JSON tokens
            # (outlines' default); writing none is one of the texts TGI may return
            fields["structured"] = {"json_schema": value}
        elif kind == "regex":
            fields["structured"] = {"regex": value}
        else:
            raise Invalid("`grammar.type` must be json or regex")
    try:
        return SamplingParams(**fields), seed if sampling else None
    except unillm.UnillmError as exc:
        raise Invalid(str(exc)) from exc


def create_app(gen: unillm.Generator, model_id: str = "standin"):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI(title="TGI-protocol stand-in (unillm tests)")
    tok = gen.tokenizer
    eos_ids = tok.eos_token_ids
    context = gen.engine.context_length or 2048

    def token_text(token_id: int) -> str:
        return tok.hf.convert_ids_to_tokens(token_id)

    def invalid(message: str) -> JSONResponse:
        return JSONResponse({"error": message, "error_type": "validation"}, status_code=422)

    def finish_reason(completion: unillm.Completion) -> str:
        return "length" if completion.finish_reason == "length" else "eos_token"

    async def prefill(ids: list) -> list:
        """TGI's prefill details: every prompt token, the first without a logprob."""
        logprobs = [None]
        if len(ids) > 1:
            score = await gen.ascore(({"prompt_token_ids": ids[:1]}, {"prompt_token_ids": ids[1:]}))
            logprobs += list(score.token_logprobs)
        return [{"id": i, "text": tok.hf.decode([i], skip_special_tokens=False), "logprob": lp}
                for i, lp in zip(ids, logprobs)]

    async def parse(request: Request):
        body = await request.json()
        inputs = body.get("inputs")
        if not isinstance(inputs, str) or not inputs:
            raise Invalid("`inputs` cannot be empty")
        params, seed = sampling_params(body.get("parameters") or {})
        return inputs, body.get("parameters") or {}, params, seed

    @app.get("/health")
    def health():
        return {}

    @app.get("/info")
    def info():
        return {
            "model_id": model_id, "model_dtype": "torch.float32", "model_device_type": "cpu",
            "max_concurrent_requests": 128, "max_best_of": 1, "max_stop_sequences": 4,
            "max_input_tokens": context - 1, "max_total_tokens": context,
            "validation_workers": 1, "version": "stand-in", "router": "unillm-tgi-standin",
        }

    @app.post("/generate")
    async def generate(request: Request):
        try:
            inputs, raw, params, seed = await parse(request)
        except Invalid as exc:
            return invalid(str(exc))
        out = await gen.agenerate(inputs, params)
        text = (inputs + out.text) if raw.get("return_full_text") else out.text
        body: dict[str, Any] = {"generated_text": text}
        if raw.get("details"):
            tokens = []
            for i, t in enumerate(out.token_ids):
                special = t in eos_ids
                piece = token_text(t) if special else (
                    tok.decode(out.token_ids[: i + 1])[len(tok.decode(out.token_ids[:i])):]
                )
                tokens.append({"id": t, "text": piece, "logprob": None, "special": special})
            body["details"] = {
                "finish_reason": finish_reason(out), "generated_tokens": len(out.token_ids),
                "seed": seed, "prefill": (await prefill(list(out.prompt_token_ids))
                                          if raw.get("decoder_input_details") else []),
                "tokens": tokens,
            }
        headers = {"x-prompt-tokens": str(len(out.prompt_token_ids)),
                   "x-generated-tokens": str(len(out.token_ids))}
        return JSONResponse(body, headers=headers)

    @app.post("/generate_stream")
    async def generate_stream(request: Request):
        try:
            inputs, raw, params, seed = await parse(request)
            if raw.get("decoder_input_details"):
                raise Invalid("`decoder_input_details` == true is not supported with stream")
        except Invalid as exc:
            return invalid(str(exc))

        def event(token: dict, final: dict | None = None) -> str:
            data = {"index": token["index"], "token": token["token"], "top_tokens": None,
                    "generated_text": None, "details": None}
            if final is not None:
                data.update(final)
            return "data:" + json.dumps(data) + "\n\n"

        async def events():
            stream = gen.astream(inputs, params)
            pending = None  # TGI's last event is the last token's, with the totals added
            index = 0
            try:
                async for chunk in stream:
                    if chunk.finish_reason is not None:
                        if chunk.text and pending is not None:
                            pending["token"]["text"] += chunk.text
                        break
                    for token_id in chunk.token_ids:
                        if pending is not None:
                            yield event(pending)
                        index += 1
                        special = token_id in eos_ids
                        pending = {"index": index, "token": {
                            "id": token_id, "text": token_text(token_id) if special else "",
                            "logprob": None, "special": special}}
                    if chunk.text and pending is not None and not pending["token"]["special"]:
                        pending["token"]["text"] += chunk.text
            finally:
                await stream.aclose()
            out = stream.completion
            if pending is None:  # nothing generated (cannot happen with max_new_tokens >= 1)
                return
            yield event(pending, {
                "generated_text": (inputs + out.text) if raw.get("return_full_text") else out.text,
                "details": {"finish_reason": finish_reason(out),
                            "generated_tokens": out.timing.output_tokens, "seed": seed},
            })

        return StreamingResponse(events(), media_type="text/event-stream")

    return app
