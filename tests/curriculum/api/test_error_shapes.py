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
