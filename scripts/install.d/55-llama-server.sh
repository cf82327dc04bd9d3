# llama.cpp's own server (llama-server), which the `openai` engine's conformance target runs
# against: built from the llama.cpp sources in llama-cpp-python's PyPI sdist by
# scripts/build-llama-server.sh (~6 min on 2 cores, once; cached in .cache/llama-server/).
# UNILLM_SKIP_LLAMA_SERVER=1 skips it (its target is then reported as skipped, or as a
# failure where UNILLM_REQUIRE_ENGINES lists llama-server).
build_llama_server() {
  if [ "${UNILLM_SKIP_LLAMA_SERVER:-0}" = "1" ]; then
    echo "llama-server: skipped (UNILLM_SKIP_LLAMA_SERVER=1)"
    return 0
  fi
  PYTHON="$VENV/bin/python" bash "$ROOT/scripts/build-llama-server.sh" >/dev/null
}
POST+=(build_llama_server)
