"""The module unillm loads through the entry point: it registers the engine, nothing else.

It is imported whenever unillm lists engines, so it stays cheap: the engine module imports
llama_cpp and gguf only when a model is loaded, and `requires` lets `unillm engines` report a
missing llama-cpp-python without importing it.
"""

from __future__ import annotations

import unillm

from .engine import LlamaCppEngine

INSTALL = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install ./plugins/unillm-llamacpp  '
    "(from a unillm checkout; builds llama-cpp-python with a C++ compiler)"
)


@unillm.hookimpl
def unillm_register_engines(register) -> None:
    register(
        "llamacpp", LlamaCppEngine, requires=("llama_cpp", "gguf"), install=INSTALL,
        description="llama.cpp via llama-cpp-python (GGUF; converts Hugging Face checkpoints)",
        aliases=("llama.cpp", "llama-cpp"),
    )
