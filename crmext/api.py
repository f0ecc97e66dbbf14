"""What every API endpoint shares: the error format and keyset pagination.

Errors are JSON ``{"error": {"code": ..., "message": ..., "fields": {...}}}`` with a
stable ``code`` (DRF's own codes: ``not_found``, ``invalid``, ``not_authenticated``...);
``fields`` is present for validation errors. Lists page by keyset (DRF's cursor
pagination), so page 1,000 costs what page 1 costs and inserts never shift a page.
"""
from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class KeysetPagination(CursorPagination):
    """Newest first by id (unique and indexed, so the keyset is total); ``?page_size=`` up to 200."""

    ordering = "-id"
    page_size_query_param = "page_size"
    max_page_size = 200


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for value in detail.values():
            return _first_message(value)
        return ""
    if isinstance(detail, list):
        return _first_message(detail[0]) if detail else ""
    return str(detail)


def exception_handler(error: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with every error in one shape. Anything it does not handle stays a 500."""
    response = drf_exception_handler(error, context)
    if response is None:
        return None
    if isinstance(error, exceptions.ValidationError):
        fields = error.detail if isinstance(error.detail, dict) else {"non_field_errors": error.detail}
        body: dict[str, Any] = {"code": "invalid", "message": _first_message(error.detail) or "Invalid input.",
                                "fields": fields}
    elif isinstance(error, exceptions.APIException):
        codes = error.get_codes()
        body = {"code": codes if isinstance(codes, str) else "error", "message": _first_message(error.detail)}
    else:  # Http404 and PermissionDenied from Django, which DRF maps
        body = {"code": "not_found" if response.status_code == status.HTTP_404_NOT_FOUND else "permission_denied",
                "message": _first_message(response.data)}
    response.data = {"error": body}
    return response
