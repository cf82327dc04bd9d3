"""Hugging Face checkpoint -> CTranslate2 model directory, converted once and cached.

CTranslate2 runs only its own format. Users hand unillm a Hugging Face model (a local directory
or a hub id) like they would to any other engine, so the conversion happens here, on first use:
under `cache_root()/ctranslate2/`, keyed by the model's identity (its path and the size and
modification time of each file, or hub id + revision) and the quantization, so the same model
is converted once per quantization and a changed checkpoint is converted again.

The converted directory is self-contained: CTranslate2's files, the tokenizer, and
`unillm.json` (what was converted, the context length and end-of-sequence ids, which the
CTranslate2 format does not keep). It is written to a temporary directory and renamed into
place under a file lock (`unillm.cache`), and it is used only if `unillm.json` is there, so an
interrupted conversion is never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ...cache import build_into, cache_root, file_lock

log = logging.getLogger("unillm.ctranslate2")

FORMAT_VERSION = 1
"""Bump when what this module writes changes: older conversions are then rebuilt."""

METADATA = "unillm.json"

QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16",
                 "bfloat16", "float32")
"""compute_type values that are also CTranslate2 weight types: the conversion stores weights in
that type. For ``auto`` and ``default`` the checkpoint's own type is kept."""


def is_ctranslate2_model(path: str) -> bool:
    """True for a directory in CTranslate2's format (as opposed to a Hugging Face model)."""
    return os.path.isfile(os.path.join(path, "model.bin"))


def quantization_for(compute_type: str) -> str | None:
    return compute_type if compute_type in QUANTIZATIONS else None


def _identity(source: str, revision: str | None) -> list[Any]:
    """What makes a checkpoint this checkpoint, cheaply: for a local directory its real path and
    each file's name, size and modification time (weights are not hashed: too slow for large
    models); for a hub id, the id and revision."""
    if os.path.isdir(source):
        root = Path(source).resolve()
        files = []
        for entry in sorted(root.iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            st = entry.stat()
            files.append([entry.name, st.st_size, st.st_mtime_ns])
        return ["dir", str(root), files]
    return ["hub", source, revision or "main"]


def cache_dir_for(source: str, quantization: str | None, revision: str | None,
                  trust_remote_code: bool) -> Path:
    """The directory where this checkpoint's conversion lives (whether or not it exists yet)."""
    import ctranslate2

    key = hashlib.sha256(
        json.dumps([FORMAT_VERSION, _identity(source, revision), quantization, trust_remote_code,
                    ctranslate2.__version__]).encode()
    ).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source.rstrip("/")).name or "model")[-60:]
    return cache_root() / "ctranslate2" / f"{name}-{quantization or 'asis'}-{key}"


def is_complete(directory: Path) -> bool:
    return (directory / METADATA).is_file() and (directory / "model.bin").is_file()


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """unillm's notes on a converted model ({} for a directory unillm did not convert)."""
    path = Path(directory) / METADATA
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def ensure_converted(source: str, compute_type: str, *, revision: str | None = None,
                     trust_remote_code: bool = False) -> Path:
    """The CTranslate2 directory for Hugging Face model `source`, converting it if needed."""
    quantization = quantization_for(compute_type)
    target = cache_dir_for(source, quantization, revision, trust_remote_code)
    if is_complete(target):
        return target
    with file_lock(target.parent / f".{target.name}.lock"):
        if is_complete(target):  # another process converted it while we waited
            return target
        if target.exists():  # not ours to trust: e.g. copied in by hand, or damaged
            log.warning("removing incomplete CTranslate2 conversion %s", target)
            shutil.rmtree(target)
        message = (f"converting {source} to CTranslate2 "
                   f"({quantization or 'weights as stored'}); done once, cached in {target}")
        start = time.perf_counter()
        with _progress(message):
            build_into(target, lambda tmp: _convert(source, tmp, quantization, revision,
                                                    trust_remote_code))
        _announce(f"converted {source} in {time.perf_counter() - start:.1f} s")
    return target


def _announce(message: str) -> None:
    """To the log when the application shows unillm's INFO messages, else to stderr: a
    conversion can take minutes, and a silent pause looks like a hang."""
    if log.isEnabledFor(logging.INFO) and log.hasHandlers():
        log.info(message)
    else:
        print(f"unillm: {message}", file=sys.stderr, flush=True)


def _progress(message: str):
    """The message, and a spinner while it lasts on an interactive terminal."""
    _announce(message)
    if not sys.stderr.isatty():
        return nullcontext()
    from rich.console import Console

    return Console(stderr=True).status("converting to CTranslate2")


def _convert(source: str, out: Path, quantization: str | None, revision: str | None,
             trust_remote_code: bool) -> None:
    from ctranslate2.converters import TransformersConverter
    from transformers import AutoConfig, AutoTokenizer

    start = time.perf_counter()
    converter = TransformersConverter(source, revision=revision,
                                      trust_remote_code=trust_remote_code)
    # The converter writes into an existing directory only with force=True; `out` is our own
    # fresh temporary directory.
    converter.convert(str(out), quantization=quantization, force=True)
    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision,
                                              trust_remote_code=trust_remote_code)
    tokenizer.save_pretrained(out)
    config = AutoConfig.from_pretrained(source, revision=revision,
                                        trust_remote_code=trust_remote_code)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    metadata = {
        "format_version": FORMAT_VERSION,
        "source": source if not os.path.isdir(source) else str(Path(source).resolve()),
        "revision": revision,
        "quantization": quantization,
        "context_length": getattr(text, "max_position_embeddings", None)
        or getattr(text, "n_positions", None),
        "eos_token_ids": sorted(_eos_ids(source, revision, trust_remote_code, text)),
        "conversion_seconds": round(time.perf_counter() - start, 3),
    }
    # Written last: its presence is what marks the conversion complete.
    (out / METADATA).write_text(json.dumps(metadata, indent=2))


def _eos_ids(source: str, revision: str | None, trust_remote_code: bool, config) -> set[int]:
    """End-of-sequence ids as transformers would use them: generation_config.json's (which
    may list several, e.g. Llama 3's), else the model config's."""
    from transformers import GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(source, revision=revision,
                                               trust_remote_code=trust_remote_code).eos_token_id
    except OSError:  # no generation_config.json
        eos = getattr(config, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(eos)} if isinstance(eos, int) else {int(e) for e in eos}


def read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return {}


def read_vocabulary(path: str) -> list[str]:
    """CTranslate2's own id -> token string table: prompt ids are turned into exactly the
    strings it maps back to the same ids."""
    as_json = os.path.join(path, "vocabulary.json")
    if os.path.isfile(as_json):
        with open(as_json, encoding="utf-8") as fh:
            return json.load(fh)
    as_text = os.path.join(path, "vocabulary.txt")
    if os.path.isfile(as_text):
        with open(as_text, encoding="utf-8") as fh:
            return [line.rstrip("\n") for line in fh]
    raise FileNotFoundError(f"{path} has no vocabulary.json or vocabulary.txt")  # load wraps it
