"""What every endpoint shares: token auth, one error shape, an offline OpenAPI schema."""
from __future__ import annotations

import json

import pytest
from rest_framework import exceptions
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from crmext.api import exception_handler

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_the_schema_is_public_openapi_3():
    # Public on purpose: it describes the endpoints, every one of which needs a sign-in.
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert json.loads(response.content)["openapi"].startswith("3.")


def test_swagger_ui_is_served_from_this_server(api, client, user):
    client.force_login(user)
    page = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in page
    assert "cdn" not in page.lower() and "https://" not in page  # the sidecar's files, no CDN


def test_unauthenticated_errors_have_the_common_shape():
    response = exception_handler(exceptions.NotAuthenticated(), {})
    assert response.status_code == 401
    assert response.data == {"error": {"code": "not_authenticated",
                                       "message": "Authentication credentials were not provided."}}


def test_validation_errors_carry_their_fields():
    response = exception_handler(exceptions.ValidationError({"config": {"host": ["This field is required."]}}), {})
    assert response.status_code == 400
    assert response.data == {"error": {"code": "invalid", "message": "This field is required.",
                                       "fields": {"config": {"host": ["This field is required."]}}}}


def test_an_unknown_error_is_left_to_the_500_handler():
    assert exception_handler(ZeroDivisionError(), {}) is None


def _schema() -> dict:
    return json.loads(APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)


def test_the_schema_documents_the_errors_each_operation_answers():
    # Found by Schemathesis: a detail's 404 and a list's 400 (filters) and 404 (bad cursor) were undocumented.
    paths = _schema()["paths"]
    error = {"$ref": "#/components/schemas/Error"}
    for path, method, codes in [
        ("/api/v1/contacts/", "get", {"200", "400", "401", "404"}),
        ("/api/v1/contacts/{id}/", "get", {"200", "401", "404"}),
        ("/api/v1/contacts/{id}/", "patch", {"200", "400", "401", "404"}),
        ("/api/v1/communications/", "get", {"200", "400", "401", "404"}),
        ("/api/v1/conversations/{id}/", "get", {"200", "401", "404"}),
        ("/api/v1/providers/", "get", {"200", "401"}),
    ]:
        responses = paths[path][method]["responses"]
        assert set(responses) == codes, (path, method)
        for code in codes - {"200"}:
            assert responses[code]["content"]["application/json"]["schema"] == error, (path, method, code)
    # An operation's own description of an error is kept.
    assert paths["/api/v1/connectors/{id}/unlock/"]["post"]["responses"]["403"]["description"] == "Staff only."


def test_an_invalid_cursor_is_a_documented_404(api):
    response = api.get("/api/v1/contacts/", {"cursor": "not-a-cursor"})
    assert response.status_code == 404 and json.loads(response.content)["error"]["code"] == "not_found"
    assert "404" in _schema()["paths"]["/api/v1/contacts/"]["get"]["responses"]
