"""Hugging Face checkpoint directory -> GGUF file, without a llama.cpp checkout.

    python -m unillm_llamacpp.convert HF_DIR OUT.gguf --type q8_0
    python -m unillm_llamacpp.convert HF_DIR --cached --type f32    # prints the cached path

f32 and f16 are written directly with the `gguf` package's writer, one tensor at a time (memory
stays at about one tensor); every other type is quantized from an f32 intermediate by llama.cpp
itself (`llama_model_quantize`, what the `llama-quantize` tool runs), so quantized files are the
ones llama.cpp would make. `cached_gguf` keeps conversions under $UNILLM_CACHE/gguf, keyed by the
checkpoint's files, the type, and the converter's own code and library versions, built with
`unillm.cache`'s discipline (file lock, temporary directory renamed when complete), so concurrent
loads convert once and never read a partial file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from unillm.errors import UnillmError

from .architectures import UnsupportedModelError, architecture_for
from .checkpoint import tensors as read_tensors
from .checkpoint import weight_files
from .types import QUANTIZATION_TYPES, WRITTEN_DIRECTLY
from .vocab import UnsupportedTokenizerError, write_vocab

log = logging.getLogger("unillm.llamacpp.convert")

class ConversionError(UnillmError, ValueError):
    """The checkpoint cannot be converted to GGUF (unsupported architecture, tokenizer, type)."""


def check_type(quantization: str) -> str:
    q = quantization.lower()
    if q not in QUANTIZATION_TYPES:
        raise ConversionError(
            f"quantization {quantization!r} is not one of: {', '.join(QUANTIZATION_TYPES)}"
        )
    return q


def _read_config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    if not path.is_file():
        raise ConversionError(f"{model_dir} is not a Hugging Face model directory (no config.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def _write_gguf(model_dir: Path, out: Path, dtype: str) -> None:
    """Write `model_dir` as an f32 or f16 GGUF file at `out`."""
    import gguf
    import numpy as np

    config = _read_config(model_dir)
    arch = architecture_for(config)
    vocab_size = int(config["vocab_size"])
    plan = arch.plan(read_tensors(model_dir), config)

    writer = gguf.GGUFWriter(out, arch.gguf_arch)
    writer.add_name(model_dir.name)
    arch.write_hparams(writer, config)
    writer.add_file_type(gguf.LlamaFileType[QUANTIZATION_TYPES[dtype]])
    write_vocab(writer, model_dir, vocab_size)

    def out_dtype(shape: tuple[int, ...]):
        # as llama.cpp's converter: 1-D tensors (norms, biases) stay float32
        return np.float16 if dtype == "f16" and len(shape) >= 2 else np.float32

    for item in plan:
        dt = np.dtype(out_dtype(item.shape))
        nbytes = int(np.prod(item.shape)) * dt.itemsize
        writer.add_tensor_info(item.name, item.shape, dt, nbytes)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for item in plan:  # one tensor in memory at a time
            data = np.asarray(item.source.load(), dtype=np.float32)
            if item.transform is not None:
                data = item.transform(data)
            data = np.ascontiguousarray(data, dtype=out_dtype(item.shape))
            if data.shape != item.shape:  # pragma: no cover - a planning bug
                raise ConversionError(f"{item.name}: planned shape {item.shape}, got {data.shape}")
            log.debug("%s <- %s %s", item.name, item.source.name, item.shape)
            writer.write_tensor_data(data)
    finally:
        writer.close()


def _quantize(src: Path, out: Path, quantization: str, threads: int | None) -> None:
    import ctypes

    import gguf
    import llama_cpp

    logger = logging.getLogger("llama-cpp-python")
    if logger.level == logging.NOTSET:  # llama.cpp would print every tensor it quantizes
        logger.setLevel(logging.ERROR)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(gguf.LlamaFileType[QUANTIZATION_TYPES[quantization]])
    params.nthread = threads or 0
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params))
    if rc != 0:
        raise ConversionError(f"llama.cpp could not quantize {src.name} to {quantization} (code {rc})")


def convert(
    model_dir: str | os.PathLike[str], out: str | os.PathLike[str], quantization: str = "f16",
    *, threads: int | None = None,
) -> Path:
    """Convert the Hugging Face checkpoint in `model_dir` to a GGUF file at `out`."""
    model_dir, out = Path(model_dir), Path(out)
    q = check_type(quantization)
    try:
        if q in WRITTEN_DIRECTLY:
            _write_gguf(model_dir, out, q)
        else:
            with tempfile.TemporaryDirectory(prefix=".f32-", dir=out.parent) as tmp:
                f32 = Path(tmp) / "model-f32.gguf"
                _write_gguf(model_dir, f32, "f32")
                _quantize(f32, out, q, threads)
    except (UnsupportedModelError, UnsupportedTokenizerError) as exc:
        raise ConversionError(str(exc)) from None
    return out


# -- the conversion cache -----------------------------------------------------------------
GGUF_NAME = "model.gguf"


def cache_dir() -> Path:
    from unillm.cache import cache_root

    return cache_root() / "gguf"


def _converter_digest() -> str:
    """The converter's own source: a change to how files are written invalidates the cache."""
    h = hashlib.sha256()
    for name in ("architectures.py", "checkpoint.py", "convert.py", "types.py", "vocab.py"):
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def cache_key(model_dir: Path, quantization: str) -> str:
    """Identity of a conversion: the checkpoint's files (name, size, mtime), the type, the
    converter's source and the versions of the libraries whose behaviour ends up in the file
    (transformers decides how the tokenizer is read)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:  # the conversion itself says what is missing
            return "absent"

    files = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weight_files(model_dir)]
    versions = {"converter": _converter_digest(), "gguf": installed("gguf"),
                "transformers": installed("transformers")}
    if quantization not in WRITTEN_DIRECTLY:
        versions["llama_cpp"] = installed("llama-cpp-python")
    blob = json.dumps([str(model_dir.resolve()), files, quantization, versions])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _announce(message: str) -> None:
    """Say that a conversion starts, on stderr when logging is not configured: it can take
    minutes on a real model, and a silent pause looks like a hang."""
    if log.isEnabledFor(logging.INFO) and log.hasHandlers():
        log.info(message)
    else:
        print(f"unillm: {message}", file=sys.stderr, flush=True)


def cached_gguf(
    model_dir: str | os.PathLike[str], quantization: str = "f16", *,
    root: str | os.PathLike[str] | None = None, threads: int | None = None,
) -> Path:
    """The GGUF conversion of `model_dir` at `quantization`, converted once and reused.

    Each conversion is a directory holding `model.gguf`, built and renamed into place by
    `unillm.cache` under a file lock, like every other cached build."""
    from unillm.cache import build_into, file_lock

    model_dir = Path(model_dir)
    q = check_type(quantization)
    _read_config(model_dir)
    directory = Path(root) if root is not None else cache_dir()
    target = directory / f"{model_dir.resolve().name}-{q}-{cache_key(model_dir, q)}"
    if (target / GGUF_NAME).is_file():
        return target / GGUF_NAME
    with file_lock(directory / f".{target.name}.lock"):
        if not (target / GGUF_NAME).is_file():
            _announce(f"converting {model_dir} to GGUF ({q}); done once, cached in {target}")
            start = time.perf_counter()
            build_into(target, lambda tmp: convert(model_dir, tmp / GGUF_NAME, q, threads=threads))
            log.info("converted %s (%s) in %.1f s, %.1f MB", model_dir.name, q,
                     time.perf_counter() - start, (target / GGUF_NAME).stat().st_size / 1e6)
    return target / GGUF_NAME


# -- command line -------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m unillm_llamacpp.convert",
        description="Convert a Hugging Face checkpoint directory (llama, qwen2, gpt2) to GGUF.",
    )
    parser.add_argument("model_dir", help="Hugging Face model directory (config.json, "
                        "*.safetensors, tokenizer.json); test:PRESET builds a unillm test model")
    parser.add_argument("out", nargs="?", help="output .gguf path (omit with --cached)")
    parser.add_argument("--type", default="f16", choices=list(QUANTIZATION_TYPES),
                        help="tensor type (default f16)")
    parser.add_argument("--cached", action="store_true",
                        help="convert into the unillm cache ($UNILLM_CACHE/gguf) if needed and "
                        "print the cached file's path")
    parser.add_argument("--threads", type=int, default=None, help="quantization threads")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    from unillm.testing import resolve_model

    model_dir = resolve_model(args.model_dir)
    try:
        if args.cached:
            path = cached_gguf(model_dir, args.type, threads=args.threads)
        elif args.out:
            start = time.perf_counter()
            path = convert(model_dir, args.out, args.type, threads=args.threads)
            log.info("wrote %s (%s) in %.1f s, %.1f MB", path, args.type,
                     time.perf_counter() - start, path.stat().st_size / 1e6)
        else:
            parser.error("give an output path, or --cached")
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
