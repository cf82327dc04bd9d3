"""Reading a Hugging Face checkpoint's tensors without torch.

The converter only needs names, shapes and the numbers, one tensor at a time: safetensors is a
JSON header followed by raw little-endian arrays, so a memory map gives each tensor without
loading the file (or torch, or the `safetensors` package). bfloat16, which numpy lacks, is
widened to float32 on the fly. Old `pytorch_model.bin` checkpoints need torch, imported only
for them.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_DTYPES: dict[str, np.dtype | str] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": "bf16",
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}


@dataclass(frozen=True)
class TensorRef:
    """One tensor of the checkpoint: its shape, and how to read it (as float32 or float16)."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # the checkpoint's own dtype name (F32, BF16, ...)
    load: Callable[[], np.ndarray]


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def _safetensors(path: Path) -> Iterator[TensorRef]:
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    base = 8 + size
    for name, info in header.items():
        if name == "__metadata__":
            continue
        kind = info["dtype"]
        if kind not in _DTYPES:
            raise ValueError(f"{path.name}: tensor {name!r} has dtype {kind}, which the "
                             f"converter cannot read (supported: {', '.join(_DTYPES)})")
        start, end = info["data_offsets"]
        shape = tuple(int(d) for d in info["shape"])

        def load(start=start, end=end, kind=kind, shape=shape) -> np.ndarray:
            count = end - start
            raw_dtype = np.dtype("<u2") if kind == "BF16" else _DTYPES[kind]
            data = np.memmap(path, dtype=np.uint8, mode="r", offset=base + start, shape=(count,))
            array = data.view(raw_dtype).reshape(shape)
            return _bf16_to_f32(array) if kind == "BF16" else array

        yield TensorRef(name, shape, kind, load)


def _pytorch_bin(path: Path) -> Iterator[TensorRef]:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError(f"{path.name} is a PyTorch pickle: reading it needs torch "
                         "(or re-save the model with safetensors)") from exc
    state = torch.load(path, map_location="cpu", weights_only=True)
    for name, tensor in state.items():
        dtype = str(tensor.dtype).replace("torch.", "")

        def load(tensor=tensor) -> np.ndarray:
            t = tensor.float() if tensor.dtype == torch.bfloat16 else tensor
            return t.numpy()

        yield TensorRef(name, tuple(tensor.shape), dtype.upper(), load)


def tensors(model_dir: Path) -> dict[str, TensorRef]:
    """Every tensor of the checkpoint in `model_dir`, by name (single file or sharded)."""
    files: list[Path]
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = model_dir / index_name
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = [model_dir / f for f in sorted(set(weight_map.values()))]
            break
    else:
        files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("pytorch_model*.bin"))
    if not files:
        raise ValueError(f"{model_dir} holds no model weights (*.safetensors or pytorch_model.bin)")
    out: dict[str, TensorRef] = {}
    for f in files:
        reader = _safetensors if f.suffix == ".safetensors" else _pytorch_bin
        for ref in reader(f):
            out[ref.name] = ref
    return out


def weight_files(model_dir: Path) -> list[Path]:
    """The files whose content defines the converted model (for the conversion cache key)."""
    names = ("*.safetensors", "*.bin", "*.json", "*.jinja", "*.model", "*.txt")
    found = {p for pattern in names for p in model_dir.glob(pattern) if p.is_file()}
    return sorted(found)
