# The llama.cpp plugin's own tests (conversion, its tokenizer and sampler chain, installing into
# a fresh environment). The conformance suite runs it too, from the main test run.
llamacpp_plugin_tests() {
  run_pytest "$ROOT/.venv/bin/python" plugins/unillm-llamacpp/tests "$@"
}
RUNS+=(llamacpp_plugin_tests)
