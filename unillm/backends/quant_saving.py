"""Quantized models after loading and before saving: fix-ups of bitsandbytes' and GPTQ's CPU
layouts so a loaded model runs and a saved one loads again, and the checks that refuse a save
(or a GPTQ group size) that cannot work, with the reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidParameterError, SaveNotSupportedError
from .quant_footprint import is_gptq_layer


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
            if is_gptq_layer(m) and getattr(m, "linear_mode", None) == "inference"
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
