# The vLLM test run, inside .venv-vllm (built by scripts/install.d/50-vllm.sh; sourced by
# scripts/test.sh). The conformance suite restricted to the vLLM target, plus the vLLM engine's
# own tests; UNILLM_REQUIRE_ENGINES=vllm turns "vLLM not installed" into a failure, so a green
# run means vLLM really ran.
# tests/structured's vllm_server tests (the openai engine against vLLM's server) run in the
# main run, which starts that server from this environment (UNILLM_VLLM_PYTHON below).

vllm_tests() {
  if [ "${UNILLM_SKIP_VLLM:-0}" = "1" ]; then
    echo "vllm tests: skipped (UNILLM_SKIP_VLLM=1)"
    return 0
  fi
  UNILLM_TARGETS=vllm UNILLM_REQUIRE_ENGINES=vllm \
    run_pytest "$ROOT/.venv-vllm/bin/python" tests/conformance tests/engines/test_vllm.py \
      tests/scoring/test_parity.py "$@" \
    && UNILLM_REQUIRE_ENGINES=vllm \
    run_pytest "$ROOT/.venv-vllm/bin/python" tests/structured tests/core/test_sampling_numerics.py \
      -k "vllm and not vllm_server" "$@" \
    && UNILLM_REQUIRE_ENGINES=vllm \
    run_pytest "$ROOT/.venv-vllm/bin/python" tests/tools/test_chat.py -k vllm "$@"
}

RUNS+=(vllm_tests)

# vLLM's own OpenAI-compatible server, from the same environment, behind the `openai` engine:
# the main run's conformance target openai-vllm starts it when UNILLM_VLLM_PYTHON names that
# environment's python (one server start per test model, ~3.5 min in all).
if [ "${UNILLM_SKIP_VLLM:-0}" != "1" ] && [ -x "$ROOT/.venv-vllm/bin/python" ]; then
  export UNILLM_VLLM_PYTHON="$ROOT/.venv-vllm/bin/python"
fi
