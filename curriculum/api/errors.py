"""The API's one error shape: ``{"error": {"message": "...", "fields": [{"index"?, "field", "message"}]}}``."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rest_framework import status
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.views import exception_handler as drf_exception_handler


class InvalidRequest(APIException):
    """400 naming each field that is wrong (and, in a batch, the item's index)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid"

    def __init__(self, fields: list[dict[str, Any]]):
        self.fields = fields
        super().__init__(summary(fields))


class Conflict(InvalidRequest):
    """409: the request contradicts what is stored (an idempotency key reused for another review), naming the field."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def summary(fields: list[dict[str, Any]]) -> str:
    """One line for the message: the first problem, and how many more."""
    first = fields[0]
    where = f"item {first['index']}: " if "index" in first else ""
    more = f" (and {len(fields) - 1} more)" if len(fields) > 1 else ""
    return f"{where}{first['field']}: {first['message']}{more}"


def field_errors(detail: Any, path: str = "") -> list[dict[str, Any]]:
    """DRF serializer errors (nested dicts and lists) -> [{"field": "candidates[2]", "message": ...}]."""
    if isinstance(detail, Mapping):
        out = []
        for key, value in detail.items():
            if isinstance(key, int):  # a list field's errors come keyed by position
                name = f"{path}[{key}]"
            elif key == "non_field_errors":
                name = path or "body"
            else:
                name = f"{path}.{key}" if path else str(key)
            out += field_errors(value, name)
        return out
    if isinstance(detail, Sequence) and not isinstance(detail, str):
        if all(isinstance(d, str) for d in detail):
            return [{"field": path or "body", "message": str(d)} for d in detail]
        return [e for i, d in enumerate(detail) for e in field_errors(d, f"{path}[{i}]")]
    return [{"field": path or "body", "message": str(detail)}]


def exception_handler(exc: Exception, context: dict[str, Any]):
    """DRF's handler (status, Retry-After, WWW-Authenticate), with the body rewritten to the API's shape."""
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, InvalidRequest):
        fields, message = exc.fields, str(exc.detail)
    elif isinstance(exc, ParseError):
        fields = [{"field": "body", "message": str(exc.detail)}]
        message = str(exc.detail)
    elif isinstance(exc, ValidationError):
        fields = field_errors(exc.detail) or [{"field": "body", "message": "invalid"}]
        message = summary(fields)
    else:
        fields, message = [], str(exc.detail) if isinstance(exc, APIException) else response.status_text
    response.data = {"error": {"message": message, "fields": fields}}
    return response
