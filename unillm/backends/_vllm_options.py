"""The vLLM engine's options (vLLM's engine arguments under vLLM's own names), the engine
arguments unillm always sets, and the translation of a constraint into vLLM's structured outputs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..engine import EngineOptions
from ..errors import UnsupportedParameterError
from ..params import SamplingParams


class VllmOptions(EngineOptions):
    """vLLM's engine arguments, under vLLM's own names; None leaves vLLM's default."""

    dtype: Literal["auto", "float32", "float16", "bfloat16", "half", "float"] = Field(
        "auto", description="weights and activations dtype; auto = vLLM's choice for the checkpoint"
    )
    max_model_len: int | None = Field(None, ge=1, description="context length (prompt + output)")
    gpu_memory_utilization: float | None = Field(
        None, gt=0.0, le=1.0, description="share of GPU memory vLLM may use (weights + KV cache)"
    )
    max_num_seqs: int | None = Field(None, ge=1, description="most sequences per engine step")
    max_num_batched_tokens: int | None = Field(None, ge=1, description="most tokens per engine step")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs to shard each layer over")
    pipeline_parallel_size: int = Field(1, ge=1, description="pipeline stages (GPUs / nodes)")
    quantization: str | None = Field(None, description="vLLM quantization method (awq, gptq, fp8, ...)")
    enforce_eager: bool | None = Field(
        None, description="skip CUDA graphs / torch.compile (faster start, slower steps)"
    )
    kv_cache_memory_bytes: int | None = Field(
        None, ge=1, description="KV cache size in bytes; on CPU unillm sizes it from the model "
        "when unset",
    )
    enable_prefix_caching: bool | None = Field(None, description="reuse KV of shared prompt prefixes")
    seed: int | None = Field(None, ge=0, description="the engine's global seed (unseeded requests)")
    trust_remote_code: bool = Field(False, description="run code shipped with the checkpoint")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    tokenizer: str | None = Field(None, description="tokenizer path or id, if not the model's")
    multiprocessing: bool = Field(
        False, description="run vLLM's engine core in a separate process (vLLM's own default; "
        "needs an `if __name__ == '__main__'` guard on CPU, where vLLM spawns it)",
    )
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="any other vLLM EngineArgs field, by its vLLM name"
    )


PASSED_THROUGH = (
    "dtype", "max_model_len", "gpu_memory_utilization", "max_num_seqs", "max_num_batched_tokens",
    "tensor_parallel_size", "pipeline_parallel_size", "quantization", "enforce_eager",
    "kv_cache_memory_bytes", "enable_prefix_caching", "seed", "trust_remote_code", "revision",
    "tokenizer",
)
FORCED = {
    # The checkpoint's generation_config.json must not supply sampling defaults.
    "generation_config": "vllm",
    # Per-request timing (first-token time) needs vLLM's stats; their periodic log lines are
    # switched off after loading.
    "disable_log_stats": False,
    # Structured output: the grammar engine of every other in-process engine (llguidance, the
    # same version: unillm/grammars.py), and JSON compact (unillm's default whitespace); vLLM
    # sets whitespace per engine, not per request, so "flexible" is refused here.
    "structured_outputs_config": {"backend": "guidance", "disable_any_whitespace": True},
}

VLLM_LIMITS = (("temperature", 0.0, 2.0),)
"""Values vLLM's SamplingParams refuses although unillm's allow them (vLLM 0.32 checks
temperature <= 2); its server has the same check, so the `openai` engine's vllm profile
declares it too."""


def structured_outputs(p: SamplingParams, tokenizer: Any) -> tuple[Any, dict[str, Any]]:
    """vLLM's StructuredOutputsParams for the constraint (its guidance backend runs the same
    llguidance grammar as unillm/grammars.py), and the record of it."""
    from vllm.sampling_params import StructuredOutputsParams

    from ..grammars import compile_constraint

    s = p.structured
    compile_constraint(s, tokenizer)  # the same checks (and errors) as other engines
    if s.whitespace != "compact":
        raise UnsupportedParameterError(
            "vllm", "structured.whitespace", s.whitespace,
            "vLLM sets JSON whitespace per engine, not per request; unillm starts it compact")
    kind = {"json_schema": "json"}.get(s.kind, s.kind)
    value = getattr(s, s.kind)
    if s.kind == "json_schema" and value is True:
        value = {}
    if s.kind == "choice":
        value = list(value)
    return (StructuredOutputsParams(**{kind: value}),
            {kind: value, "backend": "guidance", "disable_any_whitespace": True})
