"""unillm-llamacpp: llama.cpp as a unillm engine, installed as a separate plugin package.

    pip install ./plugins/unillm-llamacpp      # CMAKE_ARGS="-DGGML_NATIVE=OFF" on AMX CPUs
    gen = unillm.load("llamacpp", "model.gguf")            # or a Hugging Face directory
    gen = unillm.load("llamacpp", "hf-dir", quantization="q8_0")

Importing this package imports neither llama_cpp nor gguf: unillm imports the plugin module
to list engines, and engines load their library only when a model is loaded.
"""

__version__ = "0.1.0"
