"""The transformers engine's options: how to load the checkpoint (dtype, device, attention,
quantization) and how to batch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ..engine import EngineOptions
from . import quantization as quant
from .quantization import QuantizationConfig

DTYPES = ("auto", "float32", "float16", "bfloat16")


class TransformersOptions(EngineOptions):
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="weights dtype; auto = the checkpoint's own (float32 if unset)"
    )
    device: str = Field("auto", description="auto (CUDA if available, else CPU), cpu, cuda, cuda:1, ...")
    trust_remote_code: bool = Field(False, description="run code shipped with the checkpoint")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = Field(
        None, description="attention kernel; None lets transformers choose"
    )
    max_batch_size: int | None = Field(
        None, ge=1, description="split larger prompt lists into generate calls of this size"
    )
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (CPU)")
    continuous_batching: bool = Field(
        True, description="serve and stream_many through transformers' continuous-batching "
        "manager (requests join and leave a running batch at every step; docs/serve.md); "
        "False: one static batch at a time",
    )
    kv_cache_tokens: int = Field(
        16384, ge=64, description="continuous batching: tokens of paged KV cache shared by "
        "the running requests (prompt + output each); a request larger than this runs in a "
        "static batch",
    )
    quantization: QuantizationConfig | None = Field(
        None, description="quantize while loading: nf4, fp4, int8 (bitsandbytes), gptq, "
        "torchao-int8, or a QuantizationConfig / dict with knobs; None loads the checkpoint as "
        "it is (a pre-quantized checkpoint stays quantized)",
    )

    @field_validator("quantization", mode="before")
    @classmethod
    def _parse_quantization(cls, value: Any) -> Any:
        return quant.parse(value)
