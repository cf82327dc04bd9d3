"""A minimal OpenAI-compatible server for the `bench serve` tests: /v1/models and streaming
/v1/completions over a real unillm engine (transformers on a local test model).

It exists only because `unillm serve` was not merged when `bench serve` was written; once it
is, `conftest.openai_server` starts `unillm serve` instead (set UNILLM_BENCH_SERVER=unillm, or
it is chosen automatically when `unillm.serve` is importable).

    python tests/bench/openai_test_server.py MODEL_DIR PORT
"""

from __future__ import annotations

import json
import sys
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

import unillm


def make_app(model: str) -> FastAPI:
    gen = unillm.load("transformers", model, dtype="float32")
    app = FastAPI()
    name = "test-model"

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model"}]}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await request.json()
        try:
            params = unillm.SamplingParams(
                max_tokens=int(body.get("max_tokens", 16)),
                temperature=float(body.get("temperature", 1.0)),
                ignore_eos=bool(body.get("ignore_eos", False)),
            )
        except unillm.UnillmError as exc:
            return JSONResponse({"error": {"message": str(exc)}}, status_code=400)
        prompt = body["prompt"]
        created = int(time.time())

        if not body.get("stream"):
            out = await gen.agenerate(prompt, params)
            return {
                "id": "cmpl-test", "object": "text_completion", "created": created, "model": name,
                "choices": [{"index": 0, "text": out.text, "finish_reason": out.finish_reason}],
                "usage": {"prompt_tokens": out.timing.prompt_tokens,
                          "completion_tokens": out.timing.output_tokens},
            }

        async def events():
            stream = gen.astream(prompt, params)
            async for chunk in stream:
                if chunk.text or chunk.finish_reason:
                    choice = {"index": 0, "text": chunk.text, "finish_reason": chunk.finish_reason}
                    yield f"data: {json.dumps({'object': 'text_completion', 'model': name, 'choices': [choice]})}\n\n"
            c = stream.completion
            usage = {"prompt_tokens": c.timing.prompt_tokens,
                     "completion_tokens": c.timing.output_tokens}
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


if __name__ == "__main__":
    uvicorn.run(make_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
