"""Quantized Hugging Face models: one typed option instead of three libraries' configs.

`QuantizationConfig` names a method and its few knobs; this module turns it into the
`quantization_config` that `from_pretrained` takes (bitsandbytes, GPTQ through gptqmodel and
optimum, torchao), recognises checkpoints that are already quantized from their
`config.json`, measures what a loaded model really occupies (tensor subclasses and quantization
state included: `get_memory_footprint` counts neither), and makes a model safe to save.

Importing this module imports no library; each function imports what it needs.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import (
    EngineUnavailableError,
    InvalidParameterError,
    QuantizationMismatchError,
    from_validation_error,
)

Method = Literal["nf4", "fp4", "int8", "gptq", "torchao-int8"]
METHODS: tuple[str, ...] = ("nf4", "fp4", "int8", "gptq", "torchao-int8")


@dataclass(frozen=True)
class MethodInfo:
    library: str  # the distribution that implements it
    modules: tuple[str, ...]  # import names it needs
    extra: str  # the unillm extra that installs them
    bits: tuple[int, ...]  # allowed `bits`; the first is the default


METHOD_INFO: dict[str, MethodInfo] = {
    "nf4": MethodInfo("bitsandbytes", ("bitsandbytes",), "bnb", (4,)),
    "fp4": MethodInfo("bitsandbytes", ("bitsandbytes",), "bnb", (4,)),
    "int8": MethodInfo("bitsandbytes", ("bitsandbytes",), "bnb", (8,)),
    "gptq": MethodInfo("gptqmodel", ("gptqmodel", "optimum"), "gptq", (4, 2, 3, 8)),
    "torchao-int8": MethodInfo("torchao", ("torchao",), "torchao", (8,)),
}

# Which knob applies to which methods; a knob set for another method is an error, not ignored.
APPLIES: dict[str, tuple[str, ...]] = {
    "group_size": ("gptq", "torchao-int8"),
    "compute_dtype": ("nf4", "fp4"),
    "double_quant": ("nf4", "fp4"),
    "calibration": ("gptq",),
    "sym": ("gptq",),
    "desc_act": ("gptq",),
    "damp_percent": ("gptq",),
}
GPTQ_DEFAULT_GROUP_SIZE = 128


class QuantizationConfig(BaseModel):
    """How to quantize a model while loading it with the transformers engine.

    ``unillm.load("transformers", model, quantization="nf4")`` is short for
    ``quantization=QuantizationConfig(method="nf4")``; a dict works too. A knob that does not
    apply to the method (e.g. `double_quant` for GPTQ) raises `InvalidParameterError` naming
    the methods it applies to: nothing is silently ignored.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    method: Method = Field(description="nf4, fp4, int8 (bitsandbytes), gptq, torchao-int8")
    bits: int | None = Field(
        None, description="weight bits; gptq: 2, 3, 4 (default) or 8; the others have fixed "
        "widths (nf4/fp4: 4, int8/torchao-int8: 8) and accept only those",
    )
    group_size: int | None = Field(
        None, description="weights sharing one scale: gptq (default 128; -1 = one group per "
        "row), torchao-int8 (default: one scale per output channel)",
    )
    compute_dtype: Literal["float32", "float16", "bfloat16"] | None = Field(
        None, description="nf4/fp4: dtype of the matmuls (default: the model's dtype, float32 "
        "when it is auto)",
    )
    double_quant: bool = Field(
        False, description="nf4/fp4: quantize the per-block scales too (~0.4 bit/weight less)"
    )
    calibration: tuple[str, ...] | None = Field(
        None, description="gptq: calibration texts (default: unillm's 32 built-in passages, "
        "see unillm.backends.calibration_texts)",
    )
    sym: bool = Field(True, description="gptq: symmetric quantization (no zero point)")
    desc_act: bool = Field(False, description="gptq: quantize columns by decreasing activation")
    damp_percent: float = Field(
        0.1, gt=0.0, lt=1.0, description="gptq: Hessian dampening, as a fraction of its mean diagonal"
    )

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _translate(exc) from None

    @model_validator(mode="after")
    def _knobs_fit_the_method(self) -> QuantizationConfig:
        def bad(knob: str, allowed: str) -> InvalidParameterError:
            return InvalidParameterError(knob, getattr(self, knob), allowed,
                                         owner="QuantizationConfig")

        for knob, methods in APPLIES.items():
            if knob in self.model_fields_set and self.method not in methods:
                raise bad(knob, f"applies only to method {' or '.join(methods)}, "
                                f"not {self.method}")
        allowed_bits = METHOD_INFO[self.method].bits
        if self.bits is not None and self.bits not in allowed_bits:
            raise bad("bits", f"method {self.method} takes bits in {sorted(allowed_bits)}")
        if self.group_size is not None and self.group_size < 1:
            if not (self.group_size == -1 and self.method == "gptq"):
                raise bad("group_size", "a positive integer"
                          + (" or -1 (one group per row)" if self.method == "gptq" else ""))
        if self.calibration is not None and not any(t.strip() for t in self.calibration):
            raise bad("calibration", "at least one non-empty text")
        return self

    @property
    def effective_bits(self) -> int:
        return self.bits if self.bits is not None else METHOD_INFO[self.method].bits[0]

    @property
    def info(self) -> MethodInfo:
        return METHOD_INFO[self.method]


def _translate(exc: ValidationError) -> Exception:
    """Pydantic's error list -> one typed unillm error naming the first bad knob."""
    return from_validation_error(exc, QuantizationConfig.model_fields, owner="QuantizationConfig")


def parse(value: Any) -> QuantizationConfig | None:
    """A method name, a dict or a `QuantizationConfig` -> `QuantizationConfig` (None stays)."""
    if value is None or isinstance(value, QuantizationConfig):
        return value
    if isinstance(value, str):
        return QuantizationConfig(method=value.lower())
    if isinstance(value, Mapping):
        return QuantizationConfig(**dict(value))
    raise InvalidParameterError(
        "quantization", value, f"a method name ({', '.join(METHODS)}), a dict or a "
        "QuantizationConfig", owner="transformers engine option",
    )


def require_library(config: QuantizationConfig, engine: str) -> None:
    """Fail with the install command when the method's library is missing."""
    missing = [m for m in config.info.modules if importlib.util.find_spec(m) is None]
    if missing:
        raise EngineUnavailableError(
            engine, f"quantization {config.method!r} needs {', '.join(missing)}, which is not "
            "installed", f'pip install "unillm[{config.info.extra}]"',
        )


def prepare_environment(method: str | None) -> None:
    """gptqmodel sizes its CPU worker pool when it is imported: on a 2-core machine its default
    is one worker; two quantize faster here. Only set when the user has not."""
    if method == "gptq" and "GPTQMODEL_CPU_WORKERS" not in os.environ:
        cores = os.cpu_count() or 1
        os.environ["GPTQMODEL_CPU_WORKERS"] = str(max(2, min(12, (cores + 1) // 2)))


# -- from_pretrained kwargs ------------------------------------------------------------------
def hf_config(config: QuantizationConfig, *, tokenizer: Any, model_dtype: str) -> tuple[Any, dict[str, Any]]:
    """(the `quantization_config` for from_pretrained, the record of what it holds).

    Every knob is sent explicitly, library defaults included, so the record says exactly how
    the model was quantized.
    """
    import torch

    m = config.method
    if m in ("nf4", "fp4", "int8"):
        from transformers import BitsAndBytesConfig

        if m == "int8":
            sent: dict[str, Any] = dict(load_in_8bit=True, llm_int8_threshold=6.0,
                                        llm_int8_has_fp16_weight=False)
            return BitsAndBytesConfig(**sent), sent
        compute = config.compute_dtype or (model_dtype if model_dtype != "auto" else "float32")
        sent = dict(load_in_4bit=True, bnb_4bit_quant_type=m, bnb_4bit_compute_dtype=compute,
                    bnb_4bit_use_double_quant=config.double_quant, bnb_4bit_quant_storage="uint8")
        kwargs = {**sent, "bnb_4bit_compute_dtype": getattr(torch, compute),
                  "bnb_4bit_quant_storage": torch.uint8}
        return BitsAndBytesConfig(**kwargs), sent
    if m == "gptq":
        from transformers import GPTQConfig

        from .calibration_texts import DEFAULT_CALIBRATION_TEXTS

        texts = list(config.calibration if config.calibration is not None
                     else DEFAULT_CALIBRATION_TEXTS)
        texts = [t for t in texts if t.strip()]
        group = config.group_size if config.group_size is not None else GPTQ_DEFAULT_GROUP_SIZE
        sent = dict(bits=config.effective_bits, group_size=group, sym=config.sym,
                    desc_act=config.desc_act, damp_percent=config.damp_percent,
                    true_sequential=True)
        record = {**sent, "calibration": "unillm default" if config.calibration is None
                  else "caller's", "calibration_texts": len(texts)}
        return GPTQConfig(**sent, dataset=texts, tokenizer=tokenizer), record
    if m == "torchao-int8":
        from torchao.quantization import Int8WeightOnlyConfig, PerGroup, PerRow
        from transformers import TorchAoConfig

        granularity = PerGroup(config.group_size) if config.group_size else PerRow()
        record = {"quant_type": "Int8WeightOnlyConfig", "granularity": repr(granularity)}
        return TorchAoConfig(Int8WeightOnlyConfig(granularity=granularity)), record
    raise AssertionError(m)  # pragma: no cover - Method is a closed Literal


# -- checkpoints that are already quantized --------------------------------------------------
def checkpoint_quantization(model_config: Any) -> dict[str, Any] | None:
    """The quantization a checkpoint's config.json declares, in unillm's terms, or None.

    Returns ``{"method", "bits", "group_size", ..., "config": the raw dict}``; `method` is one
    of METHODS when unillm knows it, else the checkpoint's own ``quant_method`` (awq, fp8, ...),
    which transformers still loads.
    """
    qc = getattr(model_config, "quantization_config", None)
    if qc is None:
        return None
    raw = qc if isinstance(qc, dict) else qc.to_dict()
    kind = raw.get("quant_method", "unknown")
    kind = str(getattr(kind, "value", kind)).lower()  # transformers' QuantizationMethod enum
    view: dict[str, Any] = {"method": kind}
    if kind == "gptq":
        view.update(method="gptq", bits=raw.get("bits"), group_size=raw.get("group_size"),
                    sym=raw.get("sym"), desc_act=raw.get("desc_act"))
    elif kind == "bitsandbytes":
        if raw.get("load_in_4bit"):
            view.update(method=raw.get("bnb_4bit_quant_type", "fp4"), bits=4,
                        double_quant=bool(raw.get("bnb_4bit_use_double_quant")),
                        compute_dtype=str(raw.get("bnb_4bit_compute_dtype", "float32")))
        else:
            view.update(method="int8", bits=8)
    elif kind == "torchao":
        quant_type = raw.get("quant_type")
        name = quant_type if isinstance(quant_type, str) else str(quant_type)
        if "Int8WeightOnlyConfig" in name:
            view.update(method="torchao-int8", bits=8)
    view["config"] = {k: v for k, v in raw.items() if not k.startswith("_")}
    return view


def check_against_checkpoint(
    requested: QuantizationConfig, explicit: bool, found: Mapping[str, Any]
) -> None:
    """A pre-quantized checkpoint is loaded as it is; asking for something else is an error.

    `explicit` is False when the method came from an engine's default (``unillm.load("bnb",
    int8_checkpoint)`` loads the int8 checkpoint)."""
    if not explicit:
        return
    if requested.method != found["method"]:
        raise QuantizationMismatchError(
            f"the checkpoint is already quantized with {found['method']!r}; it cannot be "
            f"re-quantized with {requested.method!r}. Load it without `quantization` (or with "
            f"quantization={found['method']!r}), or start from the unquantized model."
        )
    for knob in sorted(requested.model_fields_set - {"method"}):
        asked = getattr(requested, knob)
        if knob in found and found[knob] is not None and str(found[knob]) == str(asked):
            continue
        have = found.get(knob, "not applicable")
        raise QuantizationMismatchError(
            f"QuantizationConfig.{knob} = {asked!r}, but the checkpoint is already quantized "
            f"with {knob} = {have!r}; knobs apply only when quantizing on load"
        )


# What quantization bought (weight bytes, layer kinds) and the fix-ups after loading and
# before saving live in quant_footprint.py and quant_saving.py; re-exported here so the engine
# and its tests reach every quantization step through this module.
from .quant_footprint import (  # noqa: E402
    is_quantized_kind,
    layer_kinds,
    logical_parameters,
    weight_bytes,
)
from .quant_saving import (  # noqa: E402
    after_load,
    check_gptq_group_size,
    check_serializable,
    prepare_for_save,
)

__all__ = [
    "APPLIES", "GPTQ_DEFAULT_GROUP_SIZE", "METHODS", "METHOD_INFO", "MethodInfo",
    "QuantizationConfig", "QuantizationMismatchError", "after_load", "check_against_checkpoint",
    "check_gptq_group_size", "check_serializable", "checkpoint_quantization", "hf_config",
    "is_quantized_kind", "layer_kinds", "logical_parameters", "parse", "prepare_environment",
    "prepare_for_save", "require_library", "weight_bytes",
]
