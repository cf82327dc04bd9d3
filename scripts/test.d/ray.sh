# Ray replicas run in the main test run (tests/distributed, and the conformance target
# transformers-replicas); here Ray is only made a requirement, so that a missing Ray fails the
# run instead of skipping those tests quietly (sourced by scripts/test.sh).
UNILLM_REQUIRE_ENGINES="${UNILLM_REQUIRE_ENGINES},ray"
