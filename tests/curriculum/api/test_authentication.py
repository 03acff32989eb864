"""Token authentication: a token seen recently costs no query; a deleted token is refused at once."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

URL = "/api/v1/curricula/demo/policy"


@pytest.fixture
def demo(make_curriculum):
    return make_curriculum("demo", concepts=3)


def token_queries(client):
    with CaptureQueriesContext(connection) as queries:
        assert client.get(URL).status_code == 404
    return [q["sql"] for q in queries if "authtoken_token" in q["sql"]]


def test_a_token_seen_recently_is_not_looked_up_again(api_client, demo):
    assert len(token_queries(api_client)) == 1
    assert token_queries(api_client) == []


def test_a_deleted_token_is_refused_at_once(api_client, api_user, demo):
    token_queries(api_client)
    Token.objects.filter(user=api_user).get().delete()
    response = api_client.get(URL)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"


def test_an_invalid_token_is_never_remembered(client, demo):
    for _ in range(2):
        response = client.get(URL, HTTP_AUTHORIZATION="Token " + "f" * 40)
        assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid token."


def test_a_bearer_header_is_refused_naming_the_scheme_to_use(client, api_user, demo):
    key = Token.objects.create(user=api_user).key
    response = client.get(URL, HTTP_AUTHORIZATION="Bearer " + key)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    assert response.json()["error"]["message"] == ("the Authorization header's scheme must be Token: "
                                                   "'Authorization: Token <key>' (not Bearer)")
    assert client.get(URL, HTTP_AUTHORIZATION="Token " + key).status_code == 404  # the same key, the right scheme


@pytest.mark.parametrize("header, given", [
    ("{key}", "no scheme given"),  # the key alone: never echoed
    ("Basic {key}", "not Basic"),
    ("bearer {key}", "not bearer"),
    ("x{key} {key}", "no scheme given"),  # not a scheme word: not echoed either
])
def test_a_header_without_the_token_scheme_is_refused_naming_it(client, api_user, demo, header, given):
    key = Token.objects.create(user=api_user).key
    response = client.get(URL, HTTP_AUTHORIZATION=header.format(key=key))
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    message = response.json()["error"]["message"]
    assert message == f"the Authorization header's scheme must be Token: 'Authorization: Token <key>' ({given})"
    assert key not in message
