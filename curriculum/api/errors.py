"""The API's one error shape: ``{"error": {"message": "...", "fields": [{"index"?, "field", "message"}]}}``.

DRF views answer in it through `exception_handler`; what Django answers itself (no route: 404, an uncaught
exception: 500, 400 and 403) goes through the `handler*` views below, JSON under /api/ and Django's pages
elsewhere.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import DisallowedHost, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError, UnsupportedMediaType, ValidationError
from rest_framework.views import exception_handler as drf_exception_handler

from .serializers import ErrorSerializer, render


class InvalidRequest(APIException):
    """400 naming each field that is wrong (and, in a batch, the item's index)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid"

    def __init__(self, fields: list[dict[str, Any]]):
        self.fields = fields
        super().__init__(summary(fields))


class ServerBusy(APIException):
    """503 with ``Retry-After`` (``wait`` seconds, set by REST framework's handler): this server process is already
    answering as many requests of this kind as it may at once (a load shed, not an outage)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "busy"

    def __init__(self, message: str, *, wait: int):
        self.wait = wait
        super().__init__(message)


class NotFoundField(InvalidRequest):
    """404 naming the path parameter or field that names nothing (``key``: an unknown curriculum)."""

    status_code = status.HTTP_404_NOT_FOUND
    default_code = "not_found"


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


@dataclass(frozen=True)
class ApiError:
    """What an error answer says: one line, and every problem ``{"index"?, "field", "message"}``."""

    message: str
    fields: list[dict[str, Any]] = field(default_factory=list)


def error_body(message: str, fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The API's error shape, rendered by ErrorSerializer (the schema's `Error`)."""
    return render(ErrorSerializer, ApiError(message, fields or []))


def exception_handler(exc: Exception, context: dict[str, Any]):
    """DRF's handler (status, Retry-After, WWW-Authenticate), with the body rewritten to the API's shape."""
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, InvalidRequest):
        fields, message = exc.fields, str(exc.detail)
    elif isinstance(exc, UnsupportedMediaType):
        message = str(exc.detail)
        fields = [{"field": "Content-Type", "message": message}]
    elif isinstance(exc, ParseError):
        fields = [{"field": "body", "message": str(exc.detail)}]
        message = str(exc.detail)
    elif isinstance(exc, ValidationError):
        fields = field_errors(exc.detail) or [{"field": "body", "message": "invalid"}]
        message = summary(fields)
    else:
        fields, message = [], str(exc.detail) if isinstance(exc, APIException) else response.status_text
    response.data = error_body(message, fields)
    return response


# ------------------------------------------------------------------------------- Django's own error views
API_PREFIX = "/api/"


def is_api_request(request: HttpRequest) -> bool:
    """Whether Django's error views answer ``request`` in the API's shape (a path under /api/)."""
    return request.path_info.startswith(API_PREFIX)


def service_unavailable(*, message: str, retry_after: int) -> HttpResponse:
    """503 in the API's shape with ``Retry-After`` (seconds): a service the request needs (the database, the
    artifact storage) is away, not a bug; crlsite.outages answers it. The message names the service, no detail."""
    response = JsonResponse(error_body(message), status=503)
    response["Retry-After"] = str(retry_after)
    return response


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """`handler404`: no such route (or an Http404 outside DRF)."""
    if not is_api_request(request):
        return defaults.page_not_found(request, exception)
    return JsonResponse(error_body(f"no such API path: {request.method} {request.path}"), status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """`handler500`: an uncaught exception (Django has already logged it with its traceback)."""
    if not is_api_request(request):
        return defaults.server_error(request)
    return JsonResponse(error_body("internal server error; the failure is logged on the server"), status=500)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """`handler400`: a request Django refuses before any view (e.g. a Host not in ALLOWED_HOSTS)."""
    if not is_api_request(request):
        return defaults.bad_request(request, exception)
    return JsonResponse(error_body(_refusal(request, exception)), status=400)


def _refusal(request: HttpRequest, exception: Exception | None) -> str:
    """What Django refused before any view, in its own words (at most 300 characters): a Host it does not answer to
    or cannot read, a body or a form over its limits; else "bad request"."""
    if isinstance(exception, (DisallowedHost, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)):
        # Django's own line: which Host (as it read it, SERVER_NAME without a Host header) and why, e.g. "Invalid
        # HTTP_HOST header: 'evil.com'. You may need to add 'evil.com' to ALLOWED_HOSTS."
        said = str(exception)
        return "request refused: " + (said if len(said) <= 300 else said[:297] + "...")
    return "bad request"


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """`handler403`: PermissionDenied raised outside DRF."""
    if not is_api_request(request):
        return defaults.permission_denied(request, exception)
    return JsonResponse(error_body(str(exception) if exception and str(exception) else "permission denied"), status=403)
