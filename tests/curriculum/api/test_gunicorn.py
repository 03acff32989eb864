"""The API through a real gunicorn on loopback: a chunked request body is read; errors keep the JSON shape."""
from __future__ import annotations

import http.client
import json
import os

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def gunicorn(other_process_database_url, gunicorn_server):
    """Port of `gunicorn crlsite.wsgi` on 127.0.0.1, on the test database."""
    env = {k: v for k, v in os.environ.items() if k not in {"CACHE_URL", "REDIS_URL"}}
    env.update(DATABASE_URL=other_process_database_url, LOG_LEVEL="WARNING", OMP_NUM_THREADS="1")
    return gunicorn_server(env)


@pytest.fixture
def token(api_user):
    from rest_framework.authtoken.models import Token

    return Token.objects.create(user=api_user).key


def review(n: int) -> dict:
    return {"curriculum": "demo", "learner": "u1", "concept": "c1", "correct": True,
            "reviewed_at": f"2026-01-05T09:00:{n:02d}Z"}


def test_a_chunked_review_post_is_read(gunicorn, token, make_curriculum):
    from curriculum.models import ReviewLog

    make_curriculum("demo", concepts=3)
    body = json.dumps([review(1), review(2)]).encode()
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn, timeout=30)
    # http.client sends an iterable body chunk by chunk, with Transfer-Encoding: chunked and no Content-Length
    conn.request("POST", "/api/v1/reviews", body=iter([body[:17], body[17:]]), encode_chunked=True,
                 headers={"Authorization": f"Token {token}", "Content-Type": "application/json",
                          "Transfer-Encoding": "chunked"})
    response = conn.getresponse()
    payload = json.loads(response.read())
    assert response.status == 201, payload
    assert payload == {"created": 2, "duplicates": 0}
    assert ReviewLog.objects.count() == 2


def test_a_chunked_body_that_is_not_json_is_a_400_naming_the_body(gunicorn, token, make_curriculum):
    make_curriculum("demo", concepts=3)
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn, timeout=30)
    conn.request("POST", "/api/v1/reviews", body=iter([b"{not json"]), encode_chunked=True,
                 headers={"Authorization": f"Token {token}", "Transfer-Encoding": "chunked"})
    response = conn.getresponse()
    error = json.loads(response.read())["error"]
    assert response.status == 400 and error["fields"][0]["field"] == "body" and "malformed JSON" in error["message"]


def test_an_unknown_api_path_is_a_json_404_through_the_server(gunicorn, token):
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn, timeout=30)
    conn.request("GET", "/api/v2/nothing", headers={"Authorization": f"Token {token}"})
    response = conn.getresponse()
    assert response.status == 404 and response.getheader("Content-Type").startswith("application/json")
    assert "message" in json.loads(response.read())["error"]


def test_recommendations_through_the_server_and_its_keep_alive_limit(other_process_database_url, gunicorn_server,
                                                                     token, make_curriculum):
    # gunicorn.conf.py (read from the repository, gunicorn's working directory): the 3rd request of a connection is
    # answered with Connection: close when WEB_KEEPALIVE_REQUESTS=3. Through crlsite.wsgi the first answer is
    # Django's, the next ones the lean path's (curriculum/api/lean_path.py; that they are equal to Django's is
    # test_lean_path.py's): the same shape and headers through the real server
    env = {k: v for k, v in os.environ.items() if k not in {"CACHE_URL", "REDIS_URL"}}
    env.update(DATABASE_URL=other_process_database_url, LOG_LEVEL="WARNING", OMP_NUM_THREADS="1",
               WEB_KEEPALIVE_REQUESTS="3")
    port = gunicorn_server(env, threads=2)  # gthread: keep-alive connections (the sync worker closes each)
    make_curriculum("demo", concepts=3)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    answers = []
    for n in range(3):
        conn.request("POST", "/api/v1/recommendations", body=json.dumps({"curriculum": "demo", "learner": f"u{n}"}),
                     headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
        response = conn.getresponse()
        answers.append((response.status, response.getheader("Connection"), response.getheader("X-Frame-Options"),
                        sorted(json.loads(response.read()))))
    keys = sorted(["recommendation_id", "concept", "scores", "policy", "strategy", "unscored"])
    assert answers == [(200, "keep-alive", "DENY", keys), (200, "keep-alive", "DENY", keys), (200, "close", "DENY", keys)]
