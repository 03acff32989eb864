"""Errors under /api/ answer in the API's JSON shape (404 no route, 405, 500); other paths keep Django's pages."""
from __future__ import annotations

import json

import pytest
from django.test import Client


def assert_api_error(response, status: int) -> dict:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    error = json.loads(response.content)["error"]
    assert isinstance(error["message"], str) and error["message"] and isinstance(error["fields"], list)
    return error


@pytest.mark.django_db
def test_an_unknown_api_path_is_a_json_404(api_client):
    error = assert_api_error(api_client.get("/api/v1/nothing-here"), 404)
    assert "/api/v1/nothing-here" in error["message"]


@pytest.mark.django_db
def test_an_unknown_path_outside_the_api_keeps_djangos_page(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


@pytest.mark.django_db
@pytest.mark.parametrize("method, path", [("get", "/api/v1/reviews"), ("delete", "/api/v1/recommendations"),
                                          ("post", "/api/schema/")])
def test_a_wrong_method_is_a_json_405(api_client, method, path):
    error = assert_api_error(getattr(api_client, method)(path), 405)
    assert method.upper() in error["message"]


@pytest.mark.django_db
def test_an_uncaught_exception_is_a_json_500_under_the_api_and_a_page_elsewhere(api_user, monkeypatch, make_curriculum):
    from rest_framework.authtoken.models import Token

    from curriculum import serving

    make_curriculum("demo", concepts=3)

    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(serving, "recommend", broken)
    client = Client(raise_request_exception=False)
    token = Token.objects.create(user=api_user).key
    response = client.post("/api/v1/recommendations", {"curriculum": "demo", "learner": "u1"},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}")
    error = assert_api_error(response, 500)
    assert "a bug" not in error["message"]  # nothing of the internals leaks to the client


def test_the_django_handlers_answer_html_outside_the_api(rf):
    from curriculum.api.errors import server_error

    response = server_error(rf.get("/admin/"))
    assert response.status_code == 500 and response["Content-Type"].startswith("text/html")
    assert_api_error(server_error(rf.get("/api/v1/reviews")), 500)


@pytest.mark.django_db
def test_a_host_the_server_does_not_answer_to_is_named_and_logged_without_a_traceback(api_client, caplog, settings):
    import logging

    settings.ALLOWED_HOSTS = ["api.example.org"]
    with caplog.at_level(logging.ERROR, logger="django.security.DisallowedHost"):
        response = api_client.get("/api/v1/experiments", HTTP_HOST="evil.example.com")
    error = assert_api_error(response, 400)
    assert "'evil.example.com'" in error["message"] and "ALLOWED_HOSTS" in error["message"]
    logged = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert logged and "evil.example.com" in logged[0].getMessage()
    assert logged[0].exc_info is None and logged[0].exc_text is None  # settings.LOGGING's filter on that logger


def test_the_refused_host_filter_keeps_the_line_and_drops_the_traceback():
    import logging
    import sys

    from crlsite.logs import WithoutTraceback

    try:
        raise ValueError("inner")
    except ValueError:
        record = logging.LogRecord("django.security.DisallowedHost", logging.ERROR, __file__, 1,
                                   "Invalid HTTP_HOST header: %r.", ("evil",), sys.exc_info())
    assert WithoutTraceback().filter(record) and record.exc_info is None
    assert logging.Formatter().format(record) == "Invalid HTTP_HOST header: 'evil'."


@pytest.mark.django_db
def test_a_body_without_content_type_under_the_development_server_is_told_why(api_client):
    """runserver hands a request without Content-Type on as text/plain: the 415 says so."""
    response = api_client.generic("POST", "/api/v1/recommendations", b'{"curriculum": "x", "learner": "a"}',
                                  content_type="text/plain")
    error = assert_api_error(response, 415)
    assert "'text/plain'" in error["message"] and "without a Content-Type" in error["message"]
    other = api_client.generic("POST", "/api/v1/recommendations", b"{}", content_type="text/csv")
    assert "without a Content-Type" not in assert_api_error(other, 415)["message"]


@pytest.mark.django_db
def test_a_chunked_body_the_server_cannot_read_is_refused_naming_the_cause(api_client):
    """Without wsgi.input_terminated (runserver) the body cannot be read: not "five fields missing"."""
    response = api_client.generic("POST", "/api/v1/reviews", b"", content_type="application/json",
                                  HTTP_TRANSFER_ENCODING="chunked")
    error = assert_api_error(response, 400)
    assert "chunk" in error["message"] and "Content-Length" in error["message"]


@pytest.mark.django_db
def test_a_get_with_a_chunked_header_and_no_body_is_answered(api_client):
    response = api_client.get("/api/v1/experiments", HTTP_TRANSFER_ENCODING="chunked")
    assert response.status_code == 200


@pytest.mark.django_db
def test_an_unreadable_chunked_batch_is_refused_before_it_queues_or_counts(api_client, make_curriculum, settings):
    """Refused after the permissions, before the throttles: no wait for a slot, no 503 to retry for nothing."""
    import time

    from curriculum.api.concurrency import batch_requests

    make_curriculum("demo", concepts=3)
    settings.API_BATCH_QUEUE, settings.API_BATCH_QUEUE_MS = 1, 2000
    assert batch_requests.try_acquire()  # another thread of this process is answering a batch
    try:
        started = time.monotonic()
        response = api_client.generic("POST", "/api/v1/recommendations/batch", b"", content_type="application/json",
                                      HTTP_TRANSFER_ENCODING="chunked")
        waited = time.monotonic() - started
    finally:
        batch_requests.release()
    assert "chunk" in assert_api_error(response, 400)["message"]
    assert waited < 1.0 and batch_requests.held == 0 and batch_requests.waiting == 0
