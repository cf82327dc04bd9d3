"""The routes that describe the server rather than generate: models, tokenizer, version.

`/v1/models/{id}` is OpenAI's; `/tokenize`, `/detokenize` and `/version` are vLLM's, with its
field names, so tools written for vLLM (context-length checks, prompt budgeting) work here.
Tokenizing uses the same tokenizer and chat template as generation.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from .errors import APIError, bad_request
from .schemas import DetokenizeRequest, TokenizeRequest
from .server import Server


def add_info_routes(app: FastAPI, server: Server, version: str) -> None:
    gen, config = server.gen, server.config
    context_length = gen.info.get("context_length")

    def card() -> dict[str, Any]:
        return {"id": config.served_model_name, "object": "model", "created": server.created,
                "owned_by": "unillm", "root": gen.model, "engine": gen.engine_name,
                "max_model_len": context_length}

    def tokenizer() -> Any:
        if gen.tokenizer is None:
            raise bad_request(f"engine {gen.engine_name!r} has no tokenizer here",
                              code="unsupported_parameter")
        return gen.tokenizer

    def check(model: str | None) -> None:
        if model is not None:
            server.check_model(model)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        if model_id != config.served_model_name:
            raise APIError(404, f"model {model_id!r} is not served here; this server serves "
                                f"{config.served_model_name!r}", param="model",
                           code="model_not_found")
        return card()

    @app.get("/version")
    async def version_route() -> dict[str, str]:
        return {"version": version}

    @app.post("/tokenize")
    async def tokenize(request: Request) -> dict[str, Any]:
        req: TokenizeRequest = server.validate(TokenizeRequest, await server.read_json(request))
        check(req.model)
        tok = tokenizer()
        if (req.prompt is None) == (req.messages is None):
            raise bad_request("send prompt or messages, not both or neither", "prompt")
        if req.prompt is not None:
            hf = server.chat.hf
            if req.add_special_tokens is False and hf is not None:
                ids = list(hf.encode(req.prompt, add_special_tokens=False))
            else:
                ids = list(tok.encode(req.prompt))
        else:
            if not server.chat.can_render:
                raise bad_request("this engine's tokenizer cannot render chat messages",
                                  "messages", "unsupported_parameter")
            ids = server.chat.token_ids(
                [m.as_template_message() for m in req.messages or ()],
                add_generation_prompt=req.add_generation_prompt is not False,
                continue_final_message=bool(req.continue_final_message),
                add_special_tokens=bool(req.add_special_tokens),
                kwargs=dict(req.chat_template_kwargs or {}))
        return {"count": len(ids), "max_model_len": context_length, "tokens": ids}

    @app.post("/detokenize")
    async def detokenize(request: Request) -> dict[str, Any]:
        req: DetokenizeRequest = server.validate(DetokenizeRequest,
                                                 await server.read_json(request))
        check(req.model)
        tok = tokenizer()
        vocab = getattr(tok, "vocab_size", None)
        bad = [i for i in req.tokens if i < 0 or (vocab is not None and i >= vocab)]
        if bad:
            raise bad_request(f"token id {bad[0]} is outside the vocabulary (0 <= id < {vocab})",
                              "tokens")
        return {"prompt": tok.decode(req.tokens)}
