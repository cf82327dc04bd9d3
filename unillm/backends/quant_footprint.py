"""What quantization bought: the bytes a quantized model's weights really hold, its logical
parameter count, and which kind of layer each linear layer became (for `Generator.info`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


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


def is_gptq_layer(module: Any) -> bool:
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
        if is_gptq_layer(module):
            count += module.in_features * module.out_features
    return count


def layer_kinds(model: Any) -> dict[str, str]:
    """Each linear layer's name -> the class doing its matmul (or its weight's tensor type):
    shows which layers a method quantized and which it kept in full precision."""
    import torch

    kinds: dict[str, str] = {}
    for name, module in model.named_modules():
        if is_gptq_layer(module):
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


