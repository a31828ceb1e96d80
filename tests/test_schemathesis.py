"""Property-based API testing against the service's own OpenAPI schema: no 500s, and every
response matches what the schema says."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import response_schema_conformance

from imagestore.wsgi import application

schema = schemathesis.openapi.from_wsgi("/docs/schema?format=json", application)


def not_a_server_error(ctx, response, case) -> None:
    assert response.status_code < 500 or response.status_code == 503, (
        f"{case.method} {case.formatted_path} answered {response.status_code}: {response.text[:200]}"
    )


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_follows_its_schema(case, on_replica_set):
    response = case.call()
    case.validate_response(response, checks=(not_a_server_error, response_schema_conformance))
