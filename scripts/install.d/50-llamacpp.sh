# llama.cpp: the separately packaged plugin plugins/unillm-llamacpp, installed into .venv after
# unillm (it depends on it). llama-cpp-python has no CPU wheel on PyPI: pip compiles it (~4 min
# on 2 cores; pip's wheel cache makes later installs take seconds). GGML_NATIVE=OFF builds the
# portable kernels: the native build picks AMX kernels that crash on quantized models on this
# kind of CPU (see ../shared/ENGINES.md). The [hf] extra adds transformers, already installed.
install_llamacpp() {
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" \
    "$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" "./plugins/unillm-llamacpp[hf]"
}
POST+=(install_llamacpp)
