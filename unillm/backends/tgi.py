"""Hugging Face Text Generation Inference through its native API: ``/generate`` and
``/generate_stream`` (for TGI's OpenAI-style ``/v1`` routes, use the `openai` engine).

TGI's parameters differ from OpenAI's: greedy decoding is ``do_sample: false`` with no
temperature (TGI rejects temperature 0), top_p must lie strictly between 0 and 1 (so "off" is
sent as no top_p), and its generated text keeps the stop sequence that ended it. unillm
therefore matches stop strings itself (streaming, and closing the stream at the first match),
which also lifts TGI's limit on the number of stop sequences.

A `structured` constraint goes in TGI's `grammar` parameter (JSON schema or regex; a choice as
a regex of its strings), with flexible JSON whitespace (TGI's own). Refused rather than
approximated: min_p, presence_penalty, min_tokens, ignore_eos (TGI has no
such parameter) and frequency_penalty (TGI divides the counts by the sequence length, which is
not OpenAI's definition).

Scoring (`Generator.score`) reads the prompt's token log-probabilities from
``decoder_input_details`` (``details.prefill``); TGI gives no alternatives for prompt tokens, so
whether a continuation is the greedy one is unknown (`Score.is_greedy` None).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from pydantic import Field

from ..engine import (
    Capabilities,
    EngineRequest,
    EngineResult,
    EngineSequence,
    ScoreRequest,
    ScoreResult,
    TokenEvent,
)
from ..errors import EngineError, InvalidParameterError, ServerError
from ..hookspecs import hookimpl
from ..params import SamplingParams
from ._server_constraints import SERVER_WHITESPACE, check_compiles, for_tgi
from .http import HTTPClient, HTTPEngine, HTTPOptions
from .http.scoring import UNKNOWN, ContextCounts, continuation_scores

PARAMS = frozenset({"max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed"})

RESERVED = frozenset({"max_new_tokens", "do_sample", "temperature", "top_p", "top_k",
                      "repetition_penalty", "seed", "stop", "details", "decoder_input_details",
                      "return_full_text", "best_of", "typical_p", "frequency_penalty",
                      "watermark", "top_n_tokens"})

FINISH = {"length": "length", "eos_token": "stop", "stop_sequence": "stop"}


class TGIOptions(HTTPOptions):
    base_url: str = Field("http://127.0.0.1:8080", description="the TGI server's address")
    probe: bool = Field(True, description="ask the server's GET /info at load (model id, limits)")
    extra_parameters: dict[str, Any] = Field(
        default_factory=dict, description="fields added to every request's parameters "
        "(e.g. adapter_id, grammar)",
    )


class TGIEngine(HTTPEngine):
    """A model served by Text Generation Inference."""

    Options = TGIOptions
    capabilities = Capabilities(
        params=PARAMS | {"structured"}, batch_params="per_request", token_ids=False, chat=False,
        stop_hook=True, concurrent=True, score=True,
        structured_kinds=frozenset({"json_schema", "regex", "choice"}),
        structured_whitespace=frozenset({"flexible"}),
        notes={"structured": "TGI's grammar parameter takes a JSON schema or a regex (a choice "
               "is sent as a regex); its grammars are not llguidance's Lark",
               "structured.whitespace": SERVER_WHITESPACE},
    )

    def __init__(self, model: str, options: TGIOptions):
        super().__init__(model, options)
        clash = sorted(RESERVED & set(options.extra_parameters))
        if clash:
            raise InvalidParameterError(
                "extra_parameters", options.extra_parameters,
                f"parameters unillm sets itself cannot be overridden: {', '.join(clash)}",
                owner="tgi engine option",
            )
        self.client = HTTPClient("tgi", options)
        self._counts = ContextCounts()
        self.server_info: dict[str, Any] = {}
        if options.probe:
            self.server_info = self._probe("info")
        if not self.model:
            self.model = str(self.server_info.get("model_id") or "")

    # -- requests ----------------------------------------------------------------------------
    def _body(self, request: EngineRequest) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the request body, the record of it that the request's result reports)."""
        p = request.params
        sampling = not p.is_greedy
        parameters: dict[str, Any] = {
            "max_new_tokens": p.max_tokens,
            "do_sample": sampling,
            # TGI switches sampling on whenever one of these is present: greedy sends none.
            "temperature": p.temperature if sampling else None,
            "top_p": p.top_p if sampling and p.top_p < 1.0 else None,
            "top_k": p.top_k if sampling else None,
            "seed": p.seed if sampling else None,
            "repetition_penalty": p.repetition_penalty,
            "typical_p": None,
            "frequency_penalty": None,
            "watermark": False,
            "return_full_text": False,
            "details": True,
            "decoder_input_details": False,
            **self.options.extra_parameters,
        }
        if p.structured is not None:  # TGI's grammar parameter (_server_constraints.py)
            if "grammar" in self.options.extra_parameters:
                raise InvalidParameterError("extra_parameters", self.options.extra_parameters,
                                            "no grammar together with SamplingParams.structured",
                                            owner="tgi engine option")
            check_compiles(p.structured)
            parameters.update(for_tgi(p.structured))
        received = {"endpoint": "/generate", **parameters}
        return {"inputs": request.prompt if request.prompt is not None else "",
                "parameters": parameters}, received

    @staticmethod
    def _finish(details: dict[str, Any] | None) -> str:
        reason = (details or {}).get("finish_reason")
        return FINISH.get(reason, "stop")

    def _result(self, data: Any, headers: Any, received: dict[str, Any]) -> EngineResult:
        if isinstance(data, list):  # the "/" route answers with a list; /generate with one object
            data = data[0] if data else {}
        if not isinstance(data, dict) or "generated_text" not in data:
            raise EngineError(self.name, f"unexpected answer from the server: {str(data)[:200]}")
        details = data.get("details") or {}
        prompt_tokens = headers.get("x-prompt-tokens")
        seq = EngineSequence([], self._finish(details), text=data["generated_text"],
                             output_tokens=details.get("generated_tokens"))
        return EngineResult([seq], received=received,
                            prompt_tokens=int(prompt_tokens) if prompt_tokens else None)

    def _events(self, event: dict[str, Any], deltas: list[int]) -> Iterator[TokenEvent]:
        token = event.get("token") or {}
        text = "" if token.get("special") else (token.get("text") or "")
        if text:
            deltas[0] += 1
            yield TokenEvent(0, (), text=text)
        if event.get("generated_text") is not None or event.get("details"):
            details = event.get("details") or {}
            count = details.get("generated_tokens")
            yield TokenEvent(0, (), finish_reason=self._finish(details),
                             output_tokens=count if count is not None else deltas[0])

    def _no_finish(self) -> EngineError:
        return EngineError(self.name, "the server ended the stream before its final event "
                                      "(no details): the completion is incomplete")

    # -- requests to the server -------------------------------------------------------------
    def _complete(self, request: EngineRequest) -> EngineResult:
        body, received = self._body(request)
        data, headers = self.client.post_json_with_headers("generate", body)
        return self._result(data, headers, received)

    async def _acomplete(self, request: EngineRequest) -> EngineResult:
        body, received = self._body(request)
        data, headers = await self.client.apost_json_with_headers("generate", body)
        return self._result(data, headers, received)

    def stream(self, request: EngineRequest) -> Iterator[TokenEvent]:
        deltas = [0]
        body, received = self._body(request)
        yield TokenEvent(result=EngineResult(received=received))
        for raw in self.client.stream_events("generate_stream", body):
            for event in self._events(raw, deltas):
                yield event
                if event.finish_reason is not None:
                    return
        raise self._no_finish()

    async def astream(self, request: EngineRequest) -> AsyncIterator[TokenEvent]:  # type: ignore[override]
        deltas = [0]
        body, received = self._body(request)
        yield TokenEvent(result=EngineResult(received=received))
        async for raw in self.client.astream_events("generate_stream", body):
            for event in self._events(raw, deltas):
                yield event
                if event.finish_reason is not None:
                    return
        raise self._no_finish()

    # -- scoring: decoder_input_details ---------------------------------------------------
    def _prefill_body(self, text: str) -> dict[str, Any]:
        body, _ = self._body(EngineRequest(SamplingParams(max_tokens=1, temperature=0.0),
                                           prompt=text))
        body["parameters"]["decoder_input_details"] = True
        return body

    @staticmethod
    def _prefill(data: Any) -> list[dict[str, Any]]:
        if isinstance(data, list):
            data = data[0] if data else {}
        return list(((data or {}).get("details") or {}).get("prefill") or ())

    def _scored(self, request: ScoreRequest, count: int, data: Any) -> ScoreResult:
        prefill = self._prefill(data)
        tokens = continuation_scores(
            self.name, request, count, [str(t.get("text") or "") for t in prefill],
            [t.get("logprob") for t in prefill], None, len(prefill))
        return ScoreResult(tokens, {"endpoint": "/generate", "decoder_input_details": True,
                                    "max_new_tokens": 1, "context_tokens": count})

    def _score_one(self, request: ScoreRequest) -> ScoreResult:
        context = request.context or ""
        count = self._counts.get(context)
        if count is None:
            try:
                count = len(self._prefill(self.client.post_json("generate",
                                                                self._prefill_body(context))))
            except ServerError:
                if context:
                    raise
                count = UNKNOWN  # TGI refuses empty inputs
            self._counts.put(context, count)
        whole = self._prefill_body(context + (request.continuation or ""))
        return self._scored(request, count, self.client.post_json("generate", whole))

    async def _ascore_one(self, request: ScoreRequest) -> ScoreResult:
        context = request.context or ""
        count = self._counts.get(context)
        if count is None:
            try:
                count = len(self._prefill(await self.client.apost_json(
                    "generate", self._prefill_body(context))))
            except ServerError:
                if context:
                    raise
                count = UNKNOWN
            self._counts.put(context, count)
        whole = self._prefill_body(context + (request.continuation or ""))
        return self._scored(request, count, await self.client.apost_json("generate", whole))

    def info(self) -> dict[str, Any]:
        return {"base_url": self.client.base_url, "server_info": self.server_info}


@hookimpl
def unillm_register_engines(register) -> None:
    register(
        "tgi", TGIEngine, requires=("httpx",),
        description="Hugging Face Text Generation Inference (/generate, /generate_stream)",
    )
