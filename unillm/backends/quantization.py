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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import (
    EngineUnavailableError,
    InvalidParameterError,
    QuantizationMismatchError,
    SaveNotSupportedError,
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


# -- what quantization bought ----------------------------------------------------------------
def _quant_state_tensors(state: Any) -> Iterable[Any]:
    """The tensors inside a bitsandbytes QuantState / MatmulLtState (absmax, code, nested
    state, row scales...)."""
    import torch

    for value in vars(state).values():
        if isinstance(value, torch.Tensor):
            yield value
        elif type(value).__name__ in _STATE_HOLDERS:
            yield from _quant_state_tensors(value)


def _tensor_bytes(t: Any, seen: set[int]) -> int:
    """Bytes a tensor really holds: tensor subclasses (torchao) are summed over their inner
    tensors, bitsandbytes weights include their quantization state."""
    import torch

    if id(t) in seen:
        return 0
    seen.add(id(t))
    flatten = getattr(type(t), "__tensor_flatten__", None)
    if flatten is not None:
        names, _ = t.__tensor_flatten__()
        return sum(_tensor_bytes(getattr(t, n), seen) for n in names)
    try:
        key = t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # pragma: no cover - exotic tensors
        key = None
    total = 0
    if key is None or key not in seen:
        if key:
            seen.add(key)
        total += t.numel() * t.element_size()
    state = getattr(t, "quant_state", None)
    if state is not None and id(state) not in seen:
        seen.add(id(state))
        total += sum(_tensor_bytes(x, seen) for x in _quant_state_tensors(state))
    scb = getattr(t, "SCB", None)
    if isinstance(scb, torch.Tensor):
        total += _tensor_bytes(scb, seen)
    return total


def weight_bytes(model: Any) -> int:
    """Bytes of every tensor the model holds, counted once, as stored in memory: parameters,
    buffers, and tensors kernels keep as plain attributes (e.g. a GPTQ layer's CPU-packed
    scales)."""
    import torch

    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        total += _tensor_bytes(t, seen)
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Tensor):
                total += _tensor_bytes(value, seen)
            elif type(value).__name__ in _STATE_HOLDERS:
                total += sum(_tensor_bytes(x, seen) for x in _quant_state_tensors(value))
    return total


_STATE_HOLDERS = ("QuantState", "MatmulLtState")
"""Objects in which bitsandbytes keeps tensors off the parameter (int8 row scales move from
the weight to the layer's MatmulLtState at the first forward pass)."""


def _is_gptq_layer(module: Any) -> bool:
    return hasattr(module, "qweight") and hasattr(module, "in_features") and hasattr(module, "bits")


def logical_parameters(model: Any) -> int:
    """Weights the model computes with, whatever their storage (a packed 4-bit tensor holds two
    per byte; a GPTQ layer keeps its weights in buffers)."""
    count = 0
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        state = getattr(p, "quant_state", None)
        shape = getattr(state, "shape", None)
        count += int(shape.numel()) if shape is not None else p.numel()
    for module in model.modules():
        if _is_gptq_layer(module):
            count += module.in_features * module.out_features
    return count


def layer_kinds(model: Any) -> dict[str, str]:
    """Each linear layer's name -> the class doing its matmul (or its weight's tensor type):
    shows which layers a method quantized and which it kept in full precision."""
    import torch

    kinds: dict[str, str] = {}
    for name, module in model.named_modules():
        if _is_gptq_layer(module):
            kinds[name] = type(module).__name__
        elif isinstance(module, torch.nn.Linear):
            weight = module.weight
            if type(module) is not torch.nn.Linear:
                kinds[name] = type(module).__name__  # bitsandbytes Linear4bit / Linear8bitLt
            elif type(weight) not in (torch.Tensor, torch.nn.Parameter):
                kinds[name] = type(weight).__name__  # torchao tensor subclass
            else:
                kinds[name] = f"Linear({str(weight.dtype).replace('torch.', '')})"
    return kinds


def is_quantized_kind(kind: str) -> bool:
    return not kind.startswith("Linear(")


# -- after loading, and before saving -------------------------------------------------------
_NESTED_STATE = "_unillm_nested_absmax"


def after_load(model: Any) -> None:
    """Fix-ups for a freshly loaded quantized model, before its first forward pass.

    bitsandbytes 4-bit layers: keep their double-quantized scales as loaded (a few bytes per 64
    weights), because the first forward pass on CPU replaces them and only the originals save
    exactly (see `prepare_for_save`); and keep layers whose input size is not a multiple of the
    64-weight block off bitsandbytes' CPU repacking, which assumes it and fails with a reshape
    error (bitsandbytes 0.50; such layers run its generic dequantize-and-matmul path instead).
    GPTQ layers: gptqmodel's CPU kernel needs the group size to divide each layer's input size
    and otherwise fails at the first forward pass; say so at load, naming the layer.
    """
    aten = {n: m for n, m in model.named_modules() if type(m).__name__ == "TorchAtenLinear"}
    for name, module in aten.items():
        _check_group_size(module.group_size, {n: m.in_features for n, m in aten.items()})
    for module in _bnb_4bit_layers(model):
        state = getattr(module.weight, "quant_state", None)
        if state is None:
            continue
        if state.shape[-1] % state.blocksize:
            module.support_avx512bf16_for_cpu = False
        if state.nested and not getattr(state, "packing_format_for_cpu", False):
            setattr(module, _NESTED_STATE, (state.absmax, state.offset, state.state2))


def check_gptq_group_size(model_config: Any, group_size: int) -> None:
    """Before spending minutes on GPTQ: the group size must divide the input size of every
    layer it quantizes, or gptqmodel's CPU kernel fails at the first forward pass. The layers
    are read from the model built on the meta device (no memory, no weights)."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(model_config)
    head = model.get_output_embeddings()
    inputs = {n: m.in_features for n, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and m is not head}
    _check_group_size(group_size, inputs)


def _check_group_size(group: int, inputs: Mapping[str, int]) -> None:
    for name, size in inputs.items():
        if group > 0 and size % group:
            fits = [g for g in (128, 64, 32, 16) if all(i % g == 0 for i in inputs.values())]
            raise InvalidParameterError(
                "group_size", group, f"a divisor of every quantized layer's input size for "
                f"gptqmodel's CPU kernel ({name} takes {size}); this model fits "
                f"{', '.join(map(str, fits)) or 'none of 128, 64, 32, 16'}",
                owner="QuantizationConfig",
            )


def _bnb_4bit_layers(model: Any) -> list[Any]:
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return []
    return [m for m in model.modules() if isinstance(m, Linear4bit)]


def prepare_for_save(model: Any) -> None:
    """Undo the repacking CPU kernels apply at the first forward pass, so that a saved model
    reloads and computes exactly what it computed in memory.

    bitsandbytes: on CPUs with AVX512-BF16, bitsandbytes 0.50 repacks a 4-bit weight at its first forward
    pass (`packing_format_for_cpu`), dequantizes double-quantized scales, and keeps the
    per-block scales (absmax) transposed in bfloat16. Its own inverse, run when saving, restores
    the weight but leaves the scales transposed unless double quantization is on, so the
    checkpoint reloads with scrambled scales (top-1 agreement with float32 falls from ~35 % to
    ~3 % on the test model); with double quantization it re-quantizes the scales, so the reload
    computes slightly different numbers. Here the weight goes through bitsandbytes' inverse and
    the scales are restored: transposed back (the reload rounds them to the same bfloat16
    values again) or, when double-quantized, the originals `after_load` kept. The
    next forward pass repacks.
    """
    _restore_bnb_layers(model)
    _restore_gptq_layers(model)


def _restore_bnb_layers(model: Any) -> None:
    if not _bnb_4bit_layers(model):
        return
    import torch
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    for module in _bnb_4bit_layers(model):
        weight = module.weight
        state = getattr(weight, "quant_state", None)
        if state is None or not getattr(state, "packing_format_for_cpu", False):
            continue
        nested = state.original_nested
        kept = getattr(module, _NESTED_STATE, None)
        if nested and kept is None:  # pragma: no cover - loaded without after_load
            raise RuntimeError("double-quantized scales were not kept at load; cannot save exactly")
        # [N*K/blocksize] as the layout dequantize expects; float32 as quantize made it
        absmax = state.absmax.T.reshape(-1).to(torch.float32)
        state.original_nested = False  # skip bitsandbytes' lossy re-quantization of the scales
        weight.data, state = _convert_weight_packed_for_cpu_inverse(weight.data, state)
        if nested:
            state.absmax, state.offset, state.state2 = kept
            state.nested = True
        else:
            state.absmax = absmax
        weight.quant_state = state
        module.quant_state = state


# GPTQ -----------------------------------------------------------------------------------------
# gptqmodel's CPU kernel (TorchAtenLinear) converts each 4-bit layer in place at its first
# forward pass: the GPTQ-format weights become torch's int4pack layout, the fp16 scales become
# bfloat16 and the zero points become bfloat16 offsets. save_pretrained then writes that layout
# under GPTQ names and the checkpoint no longer loads. `_restore_gptq_layers` rebuilds the GPTQ
# buffers from the converted ones and checks, by converting them again, that they reproduce the
# running layer bit for bit; the scales keep their bfloat16 values (stored as fp16, which holds
# them exactly), so the reloaded model computes what this one did.
_INT4PACK_LAYOUTS: dict[tuple[int, int], Any] = {}


def _int4pack_source_index(n: int, k: int) -> Any:
    """For torch's CPU int4pack of an [n, k] code matrix: the flat source index of every
    nibble of the packed bytes (low nibble first). Found by packing the bit planes of the
    indices, so it holds for whatever layout this torch build uses; None if not a permutation."""
    import torch

    key = (n, k)
    if key not in _INT4PACK_LAYOUTS:
        index = torch.arange(n * k, dtype=torch.int64)
        source = torch.zeros(n * k, dtype=torch.int64)
        for bit in range(max(1, (n * k - 1).bit_length())):
            plane = ((index >> bit) & 1).reshape(n, k).to(torch.int32)
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(plane, 1).reshape(-1)
            if packed.numel() * 2 != n * k:
                _INT4PACK_LAYOUTS[key] = None
                return None
            nibbles = torch.stack([packed & 0xF, packed >> 4], dim=1).reshape(-1).to(torch.int64)
            source |= nibbles << bit
        ok = torch.equal(torch.sort(source).values, index)
        _INT4PACK_LAYOUTS[key] = source if ok else None
    return _INT4PACK_LAYOUTS[key]


def _pack_nibbles(codes: Any, dim: int) -> Any:
    """Pack 4-bit codes 8 to an int32 along `dim` (GPTQ's layout: element 8i+b at bits 4b)."""
    import torch

    codes = codes.to(torch.int64).movedim(dim, -1)
    shape = codes.shape[:-1] + (codes.shape[-1] // 8, 8)
    shifts = torch.arange(0, 32, 4, dtype=torch.int64)
    words = (codes.reshape(shape) << shifts).sum(-1)
    words = words - (words >= 2**31).to(torch.int64) * 2**32  # two's complement int32
    return words.to(torch.int32).movedim(-1, dim).contiguous()


def _gptq_layers_in_cpu_layout(model: Any) -> list[Any]:
    return [m for m in model.modules()
            if _is_gptq_layer(m) and getattr(m, "linear_mode", None) == "inference"
            and hasattr(m, "scales_and_zeros")]


def _restore_gptq_layers(model: Any) -> None:
    import torch

    for layer in _gptq_layers_in_cpu_layout(model):
        if layer.bits != 4 or layer.pack_factor != 8:
            raise _gptq_unsaveable(f"{layer.bits}-bit layers")
        packed, scales, offsets, packed_sz = (layer.qweight, layer.scales, layer.qzeros,
                                              layer.scales_and_zeros)
        n, k = layer.out_features, packed.shape[1] * 2
        source = _int4pack_source_index(n, k)
        if source is None:
            raise _gptq_unsaveable(f"an int4pack layout of shape {tuple(packed.shape)}")
        nibbles = torch.stack([packed.reshape(-1) & 0xF, packed.reshape(-1) >> 4], dim=1)
        permuted = torch.empty(n * k, dtype=torch.int64)
        permuted[source] = nibbles.reshape(-1).to(torch.int64)
        permuted = permuted.reshape(n, k)  # [out, in] with inputs in ret_idx order
        codes = torch.empty(k, n, dtype=torch.int64)
        codes[layer.ret_idx.to(torch.int64)] = permuted.t()
        center = 1 << (layer.bits - 1)
        safe = torch.where(scales == 0, torch.ones_like(scales), scales)
        zero_codes = center - torch.round(offsets.float() / safe.float()).to(torch.int64)
        zero_codes = torch.where(scales == 0, torch.full_like(zero_codes, center), zero_codes)
        restored = (_pack_nibbles(codes, 0), _pack_nibbles(zero_codes, 1),
                    scales.to(torch.float16))
        layer.qweight, layer.qzeros, layer.scales = restored
        layer.transform_cpu()  # convert again: it must give back exactly what was running
        same = (torch.equal(layer.qweight, packed) and torch.equal(layer.qzeros, offsets)
                and torch.equal(layer.scales_and_zeros, packed_sz))
        layer.qweight, layer.qzeros, layer.scales = restored
        layer.linear_mode = None  # the next forward converts again
        if not same:
            layer.qweight, layer.qzeros, layer.scales = packed, offsets, scales
            layer.scales_and_zeros = packed_sz
            layer.linear_mode = "inference"
            raise _gptq_unsaveable("layers whose CPU layout does not convert back exactly")


def _gptq_unsaveable(what: str) -> SaveNotSupportedError:
    return SaveNotSupportedError(
        "gptq", f"gptqmodel's CPU kernel repacked the model at its first forward pass and unillm "
        f"cannot restore GPTQ's format for {what}; call save() before generating",
    )


def check_serializable(model: Any, method: str | None, engine: str) -> None:
    """Raise `SaveNotSupportedError` when the quantization library cannot save this model."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return
    try:
        ok = quantizer.is_serializable()
    except TypeError:  # older signature: is_serializable(safe_serialization)
        ok = quantizer.is_serializable(True)
    if not ok:
        raise SaveNotSupportedError(engine, f"a model quantized with {method or type(quantizer).__name__!r} "
                     "cannot be saved by its library; save the unquantized model and quantize "
                     "on load instead")
