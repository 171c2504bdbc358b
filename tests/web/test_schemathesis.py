"""Property-based requests over the whole OpenAPI spec: no answer is a server error.

Schemathesis generates the requests from the app's own ``/openapi.json`` (valid and invalid
ones) and calls the real application in process. Its pytest plugin (``from_fixture``) does not
run under pytest 9, so each operation's strategy is driven by Hypothesis here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.web.conftest import TestClient

EXAMPLES = 15  # per operation and mode: the whole spec in well under a minute


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_makes_the_server_fail(
    app_client: Callable[..., TestClient], mode: GenerationMode
) -> None:
    # Schemathesis calls the app as "testserver", a name the host check would refuse.
    http = app_client(allowed_hosts=["testserver"])
    schema = schemathesis.openapi.from_asgi("/openapi.json", http.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        try:
            call()
        except Unsatisfiable:
            # No parameters to get wrong (e.g. GET /health): nothing negative to send.
            assert mode is GenerationMode.NEGATIVE
