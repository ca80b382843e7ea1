"""Property-based: schemathesis generates requests from the OpenAPI document, valid and invalid, and
no answer may be a server error or a status code the document does not list."""

from __future__ import annotations

import fakeredis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, status_code_conformance

from kat_scheduler.config import load_settings
from kat_scheduler.context.context import AppContext
from kat_scheduler.server import create_app
from kat_scheduler.server.config import ApiSettings

CLOSED = "http://127.0.0.1:9"
_settings = load_settings(key_prefix="kat-test-schema", katalogus_api=CLOSED, octopoes_api=CLOSED,
                          bytes_api=CLOSED, queue_uri="amqp://guest:guest@127.0.0.1:9/%2F",
                          katalogus_request_timeout=0.2, octopoes_request_timeout=0.2, bytes_request_timeout=0.2)
_context = AppContext.create(_settings, redis_client=fakeredis.FakeRedis(decode_responses=True))
app = create_app(_context, ApiSettings(api_token=None, reap_interval_seconds=0))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error, status_code_conformance])
