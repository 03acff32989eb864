"""Per-token throttling: 429 with Retry-After once a token has used its budget; other tokens are unaffected."""
import pytest


@pytest.fixture
def rate(throttle_rate):
    return throttle_rate("3/min")


def test_the_request_over_the_rate_is_429_with_retry_after(api_client, make_curriculum, rate):
    make_curriculum("demo", concepts=5)
    statuses = [api_client.get("/api/v1/curricula/demo/policy").status_code for _ in range(3)]
    assert statuses == [404, 404, 404]
    response = api_client.post("/api/v1/recommendations", {"curriculum": "demo", "learner": "u1"}, format="json")
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 120
    error = response.json()["error"]
    assert error["fields"] == [] and "throttled" in error["message"]


def test_each_token_has_its_own_budget(api_client, make_curriculum, rate):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    make_curriculum("demo", concepts=5)
    for _ in range(3):
        api_client.get("/api/v1/curricula/demo/policy")
    assert api_client.get("/api/v1/curricula/demo/policy").status_code == 429
    other = APIClient()
    user = get_user_model().objects.create(username="another-app")
    other.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert other.get("/api/v1/curricula/demo/policy").status_code == 404


def test_the_default_rate_parses_as_drf_expects():
    from rest_framework.throttling import SimpleRateThrottle

    assert SimpleRateThrottle.parse_rate(None, "60000/min") == (60000, 60)
