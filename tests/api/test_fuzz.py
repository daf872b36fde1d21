"""Fuzzing every operation of the OpenAPI schema (``/api/v1/`` and ``/v1/``) with schemathesis.

Each operation gets generated requests (valid and invalid bodies, query strings, path ids, headers),
sent in-process through the WSGI application, authenticated with an owner key of a project that
holds one object of every kind. Every answer must be no 5xx, have a status the schema declares for the
operation, the declared content type, and a body that matches the declared schema.

The suite runs a few derandomized examples per operation (``ATELIER_FUZZ_EXAMPLES``, 8 by default);
``make fuzz`` runs many more.
"""

from __future__ import annotations

import json
import os

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from atelier_platform.accounts.roles import Capability
from atelier_platform.accounts.services import issue_api_key
from tests.api.endpoints import make_objects

EXAMPLES = int(os.environ.get("ATELIER_FUZZ_EXAMPLES", "8"))
# Schemathesis' coverage phase (boundary values and every kind of invalid input for each field, several
# hundred requests on some operations) runs under `make fuzz`; the suite runs the random phase only.
COVERAGE = os.environ.get("ATELIER_FUZZ_COVERAGE", "") == "1"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# The schema exactly as GET /api/v1/schema/ serves it (generated here: no request needed at import).
_document = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
schema = schemathesis.openapi.from_dict(
    _document, config=SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": COVERAGE}}}),
)
schema.app = get_wsgi_application()

pytestmark = pytest.mark.fuzz


@pytest.fixture
def keep_the_test_connection():
    """Django's WSGI handler closes the database connection after each request; the test's transaction
    lives on it. Django's own test client disconnects the same signals for the same reason."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def owner_headers(project, atelier_config, keep_the_test_connection):
    """An owner key of a project with data; no rate limit, and OpenAI calls that do not wait for a worker."""
    atelier_config(rate_limit_per_minute=0, openai_wait_s=0.05)
    make_objects(project)
    key = issue_api_key(project, scopes=list(Capability.values))
    return {"Authorization": f"Bearer {key.raw}"}


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_api_conforms_to_its_schema(case, owner_headers):
    case.call_and_validate(headers=owner_headers, checks=CHECKS)
