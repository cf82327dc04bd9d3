#!/usr/bin/env bash
# Install everything the tests need (scripts/setup.sh all), then run every test suite.
# CI runs exactly this (.ci/run). Components add test runs in scripts/test.d/*.sh (e.g. vLLM
# in its own virtual environment); each defines a function and appends it to RUNS.
#
# UNILLM_REQUIRE_ENGINES lists the engines that must run here: a skipped required engine
# fails the run instead of hiding in the summary.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
if [ "${UNILLM_SKIP_SETUP:-0}" != "1" ]; then
  bash scripts/setup.sh all || { echo "setup failed"; exit 1; }
fi
# Besides engines, it names test components whose packages must be there (a missing one fails
# instead of skipping): serve (fastapi, uvicorn, openai), serve-clients (schemathesis, litellm),
# structured (llguidance, jsonschema).
export UNILLM_REQUIRE_ENGINES=${UNILLM_REQUIRE_ENGINES:-transformers,ctranslate2,llamacpp,bnb,gptq,torchao,openai,tgi,llama-server,serve,serve-clients,structured}
export PYTHONUNBUFFERED=1

# pytest exits 5 when it collected no test: that is a failure of the test run, not a pass.
run_pytest() {
  local python=$1; shift
  "$python" -m pytest "$@"
  local rc=$?
  if [ $rc -eq 5 ]; then
    echo "pytest collected no tests ($*)"
    return 1
  fi
  return $rc
}

main_tests() {
  run_pytest "$ROOT/.venv/bin/python" tests "$@"
}

RUNS=(main_tests)
for part in scripts/test.d/*.sh; do
  [ -e "$part" ] || continue
  # shellcheck source=/dev/null
  source "$part"
done

failed=()
for run in "${RUNS[@]}"; do
  echo "=== unillm test run: $run"
  if ! "$run" "$@"; then
    failed+=("$run")
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "FAILED test runs: ${failed[*]}"
  exit 1
fi
echo "all test runs passed: ${RUNS[*]}"
