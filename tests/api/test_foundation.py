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
