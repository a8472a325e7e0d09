"""Property-based fuzzing of the live gateway through its own /openapi.json (schemathesis).

Covers the static routes and the per-model operations of a model deployed for the run: no
request may produce a 5xx, an undocumented status, or a body that breaks the schema.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from deployments.iris import Iris

EXAMPLES_PER_OPERATION = 25


def test_fuzz_gateway_finds_no_server_error(gateway_url, auth, deploy_model):
    import schemathesis
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    name = deploy_model(Iris)
    headers = auth()
    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {operation.label for operation in operations}
    assert f"POST /models/{name}/tasks" in labels and f"GET /models/{name}/result" in labels

    for operation in operations:
        if operation.path == "/metrics":
            continue  # plain text, no schema to conform to

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=operation.as_strategy())
        def run(case):
            case.call_and_validate(base_url=gateway_url, headers=headers, checks=checks)

        run()
