"""The API's errors in its OpenAPI schema: the error body, and the status codes each operation can answer.

Apart from crmext.api (the handler and the pagination, which DRF's settings import early):
drf-spectacular's AutoSchema imports DRF's generic views, which import those settings.
"""
from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(required=False, help_text="Validation errors by field, when there are some.")


class ErrorSerializer(serializers.Serializer):
    """The body of every error (crmext.api.exception_handler)."""

    error = ErrorBodySerializer()


class DocumentedErrorsSchema(AutoSchema):
    """drf-spectacular's AutoSchema, plus the errors an operation can answer and does not document itself.

    - 401 everywhere: no token, or an invalid one (the API needs a signed-in user).
    - 400 for a request with a body (POST, PUT, PATCH) and for a paginated list (its filters
      are validated; an invalid one is a 400).
    - 404 for a path with an id (an object you may not see does not exist for you) and for a
      paginated list (DRF's cursor pagination answers an invalid ``cursor`` with a 404).
    An operation's own ``responses`` (with a more precise description) win.
    """

    ERRORS = {
        "400": "Invalid parameters or body; `fields` says which.",
        "401": "Not signed in: no token, or an invalid one.",
        "404": "No such object among those you may see, or an invalid cursor.",
    }

    def error_codes(self) -> list[str]:
        paginated_list = self._is_list_view() and self._get_paginator() is not None
        codes = ["401"]
        if self.method in ("POST", "PUT", "PATCH") or paginated_list:
            codes.append("400")
        if "{" in self.path or paginated_list:
            codes.append("404")
        return codes

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for code in self.error_codes():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=self.ERRORS[code]), code, direction=direction)
        return dict(sorted(responses.items()))
