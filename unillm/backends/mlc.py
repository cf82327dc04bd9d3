"""MLC LLM in-process, through its documented Python API: `mlc_llm.MLCEngine`, whose
`completions.create` and `chat.completions.create` speak the OpenAI schema (streaming too).

The request and response handling is the `openai` engine's (`OpenAIProtocol`), with MLC's
profile: MLC's schema has temperature, top_p, presence/frequency penalties and seed, and, for an
in-process engine, ``debug_config.ignore_eos``; no top_k, min_p or repetition_penalty. MLC
does not say which stop string ended a completion, so unillm matches stop strings itself.

`MLCEngine` is synchronous and runs one request at a time (MLC's own docs: use
`AsyncMLCEngine` for batching), so unillm serialises calls to it. MLC's wheels come from MLC's
own package index; the packages on PyPI are placeholders. Where it cannot be installed,
`mlc_llm serve` plus the `openai` engine (``server="mlc"``) is the same model over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pydantic import Field

from ..engine import Engine, EngineOptions, EngineRequest, EngineResult, TokenEvent
from ..errors import EngineUnavailableError
from ..hookspecs import hookimpl
from .http import collect
from ._profiles import OPENAI_FIELDS, Profile
from .openai import OpenAIProtocol

INSTALL_HINT = (
    "pip install --pre -f https://mlc.ai/wheels mlc-llm-nightly-cpu mlc-ai-nightly-cpu "
    "(PyPI has placeholders only); or `mlc_llm serve` + the openai engine, see "
    "docs/engines/mlc.md"
)


def _mlc_extra(p) -> dict[str, Any]:
    return {"extra_body": {"debug_config": {"ignore_eos": p.ignore_eos}}}


PROFILE = Profile(
    "mlc-python", "MLC LLM's Python API (MLCEngine)",
    params=OPENAI_FIELDS | {"ignore_eos"}, extra=_mlc_extra, stream_usage=True,
    notes="ignore_eos goes through debug_config, which MLCEngine accepts in-process.",
    score_refusal="MLC's completion API has no echo, so it returns no log-probabilities of "
    "given text",
)


class MLCOptions(EngineOptions):
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, metal, vulkan, ...")
    model_lib: str | None = Field(
        None, description="the compiled model library (.so); None lets MLC find or JIT-compile it"
    )
    mode: Literal["local", "interactive", "server"] = Field(
        "local", description="MLC's preset for batch size and KV-cache size"
    )
    engine_config: dict[str, Any] = Field(
        default_factory=dict, description="fields of mlc_llm.serve.EngineConfig "
        "(max_num_sequence, max_total_sequence_length, ...)",
    )


class MLCEngine(Engine):
    """A compiled MLC model run in this process."""

    Options = MLCOptions

    def __init__(self, model: str, options: MLCOptions):
        super().__init__(model, options)
        try:
            import mlc_llm
        except ImportError as exc:  # the registry's `requires` normally stops us earlier
            raise EngineUnavailableError(self.name, f"mlc_llm is not importable ({exc})",
                                         INSTALL_HINT) from exc
        self.protocol = OpenAIProtocol(self.name, PROFILE)
        self.capabilities = self.protocol.capabilities(concurrent=False)
        kwargs: dict[str, Any] = {"model_lib": options.model_lib, "mode": options.mode}
        if options.engine_config:
            from mlc_llm.serve import EngineConfig

            kwargs["engine_config"] = EngineConfig(**options.engine_config)
        self.mlc = mlc_llm.MLCEngine(model, device=options.device, **kwargs)

    def _create(self, request: EngineRequest, stream: bool):
        """(MLC's response or chunk iterator, the record of what was sent)."""
        path, body, received = self.protocol.body(self.model, request, stream)
        api = self.mlc.chat.completions if path == "chat/completions" else self.mlc.completions
        return api.create(**body), received

    @staticmethod
    def _as_dict(response: Any) -> dict[str, Any]:
        return response.model_dump() if hasattr(response, "model_dump") else dict(response)

    def generate(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        out = []
        for request in requests:  # MLCEngine runs one request at a time
            if request.trackers:
                out.append(collect(request, self.stream(request)))
            else:
                response, received = self._create(request, stream=False)
                out.append(self.protocol.result(self._as_dict(response), received))
        return out

    def stream(self, request: EngineRequest) -> Iterator[TokenEvent]:
        chunks, received = self._create(request, stream=True)
        reader = self.protocol.reader(received)
        try:
            yield reader.start()
            for chunk in chunks:
                yield from reader.feed(self._as_dict(chunk))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:  # closing MLC's generator aborts the request
                close()
        yield reader.end()

    def info(self) -> dict[str, Any]:
        return {"device": self.options.device, "mode": self.options.mode}

    def close(self) -> None:
        mlc = getattr(self, "mlc", None)
        if mlc is not None:
            mlc.terminate()
            del self.mlc


@hookimpl
def unillm_register_engines(register) -> None:
    register(
        "mlc", MLCEngine, requires=("mlc_llm",), install=INSTALL_HINT,
        description="MLC LLM in-process (MLCEngine); or `mlc_llm serve` + the openai engine",
    )
