"""A property-based fuzzer (schemathesis) drives a live server from its own `/openapi.json`.

Every generated request, valid or not, must get a response that is not a 5xx, whose status
and body are among those the schema declares, within a time limit (a hang fails). It runs on
transformers and CTranslate2 over the tiny Llama, with small generation limits so that a
bounded number of examples stays within CI's budget; the number of requests sent is printed
in the test summary.
"""

from __future__ import annotations

import httpx
import pytest

from ..conftest import require_module  # noqa: E402

schemathesis = require_module("schemathesis", "the fuzz test needs schemathesis (the "
                              "test-serve-clients extra)", "serve-clients")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import unillm  # noqa: E402

from ..conftest import require_engine  # noqa: E402
from .conftest import running_server  # noqa: E402

EXAMPLES = 250  # per engine: well under a minute each on the 2-core CI runner
REQUEST_TIMEOUT = 60  # seconds; a response slower than this is a hang
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
REPORT: dict[str, str] = {}  # engine -> summary line (tests/serve/conftest.py prints it)


@pytest.fixture(scope="module", params=["transformers", "ctranslate2"])
def fuzzed(request, tiny_llama, hf_generator):
    name = request.param
    require_engine(name)
    gen = hf_generator if name == "transformers" else unillm.load(name, tiny_llama)
    # small limits: the fuzzer may ask for n=128 samples of 4 prompts; at most 8 tokens each
    with running_server(gen, max_tokens_cap=8, max_prompts_per_request=4,
                        max_body_bytes=256 * 1024) as live:
        doc = httpx.get(f"{live.url}/openapi.json", timeout=30).json()
        yield name, live, schemathesis.openapi.from_dict(doc)
    if gen is not hf_generator:
        gen.close()


def test_fuzz_the_server_from_its_own_schema(fuzzed, record_property):
    name, live, schema = fuzzed
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/v1/completions", "/v1/chat/completions", "/tokenize"} <= paths
    strategy = st.one_of([op.as_strategy() for op in operations])
    sent = 0
    statuses: dict[int, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case):
        nonlocal sent
        sent += 1
        response = case.call(base_url=live.url, timeout=REQUEST_TIMEOUT)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)

    passed = False
    try:
        run()
        passed = True
    finally:
        REPORT[name] = (f"{sent} requests, statuses {dict(sorted(statuses.items()))}, "
                        + ("0 failures" if passed else "FAILED (see the test's report)"))
    record_property("fuzz_requests", sent)
    assert sent >= EXAMPLES // 2
    assert any(200 <= s < 300 for s in statuses), "the fuzzer never reached a success"
    assert httpx.get(f"{live.url}/health", timeout=30).status_code == 200
