"""A database that refuses connections or does not answer in time: the API answers 503 with Retry-After in its error
shape, the admin a page that needs no database, every query is bounded by the connect and statement timeouts, and
one outage is logged once (when it begins and when it ends), not per request."""
from __future__ import annotations

import http.client
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import OperationalError, connection, connections
from django.test import Client

from crlsite import outages

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_outage_left_over():
    for outage in outages.OUTAGES.values():
        outage.since = outage.last = None
        outage.requests = 0
    yield
    for outage in outages.OUTAGES.values():
        outage.since = outage.last = None


@pytest.fixture
def token(db):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    return Token.objects.create(user=get_user_model().objects.create(username="client-app")).key


@pytest.fixture
def operator_client(db):
    """A logged-in operator (their session is read from the database on the next request)."""
    from django.contrib.auth import get_user_model

    client = Client(raise_request_exception=False)
    client.force_login(get_user_model().objects.create_superuser("operator", password="x"))
    return client


@pytest.fixture
def database_refusing(monkeypatch):
    """Every new connection to the database is refused (as with PostgreSQL stopped); `back()` ends it."""
    wrapper = type(connections["default"])
    real_connect = wrapper.connect

    def refuse(self):
        raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')

    class Switch:
        def back(self):
            monkeypatch.setattr(wrapper, "connect", real_connect)

    monkeypatch.setattr(wrapper, "connect", refuse)
    connection.close()  # the next query connects, and is refused
    yield Switch()
    monkeypatch.setattr(wrapper, "connect", real_connect)


@pytest.mark.django_db(transaction=True)
def test_a_database_refusing_connections_is_a_503_with_retry_after_in_the_api_error_shape(
        token, database_refusing, settings):
    settings.CRL_RETRY_AFTER_SECONDS = 7
    client = Client(raise_request_exception=False)

    for path in ("/api/v1/curricula/demo/policy",):
        response = client.get(path, HTTP_AUTHORIZATION=f"Token {token}")
        assert response.status_code == 503 and response["Retry-After"] == "7"
        assert response["Content-Type"].startswith("application/json")
        assert json.loads(response.content) == {
            "error": {"message": "the database is unreachable; retry in 7 s", "fields": []}}
    response = client.post("/api/v1/reviews", {"curriculum": "demo"}, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 503 and response["Retry-After"] == "7"


@pytest.mark.django_db(transaction=True)
def test_the_admin_shows_a_page_saying_the_database_is_unreachable(operator_client, database_refusing):
    response = operator_client.get("/admin/")

    assert response.status_code == 503 and response["Retry-After"] == "5"
    page = response.content.decode()
    assert "Temporarily unavailable" in page and "The database is unreachable." in page


@pytest.mark.django_db(transaction=True)
def test_an_outage_is_logged_once_when_it_begins_and_once_when_it_ends(token, database_refusing, caplog):
    client = Client(raise_request_exception=False)

    with caplog.at_level(logging.INFO):
        for _ in range(5):
            assert client.get("/api/v1/curricula/demo/policy", HTTP_AUTHORIZATION=f"Token {token}").status_code == 503
        database_refusing.back()
        assert client.get("/api/v1/curricula/demo/policy", HTTP_AUTHORIZATION=f"Token {token}").status_code == 404
        assert client.get("/api/v1/curricula/demo/policy", HTTP_AUTHORIZATION=f"Token {token}").status_code == 404

    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name != "django.request"]
    assert len(messages) == 2, messages  # began, ended; nothing per 503 (django.request logs only the 404s)
    assert [r.status_code for r in caplog.records if r.name == "django.request"] == [404, 404]
    assert messages[0].startswith("database unavailable (OperationalError: connection to server")
    assert "answering 503 with Retry-After 5 s" in messages[0]
    assert messages[1].startswith("database answering again after") and "5 request(s) were answered 503" in messages[1]


def test_a_bug_is_still_a_500_not_an_outage(rf):
    assert outages.unavailable_service(RuntimeError("a bug")) is None
    assert outages.unavailable_service(OperationalError("server closed the connection unexpectedly")) == "database"


def test_the_storage_outage_begins_again_after_a_quiet_spell(caplog):
    now = [0.0]
    outage = outages.Outage("artifact storage", quiet_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.ERROR):
        for t in (0, 10, 50, 200):
            now[0] = t
            outage.failed(ConnectionError("refused"))
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["artifact storage unavailable"] * 2


# ------------------------------------------------------------------------------------------ the timeouts
def _settings_in_a_process(env: dict[str, str], code: str) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
                             + code], cwd=ROOT, env={**base, "DJANGO_SETTINGS_MODULE": "crlsite.settings", **env},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_postgresql_connections_carry_the_connect_and_statement_timeouts_from_the_environment(tmp_path):
    show = "print(settings.DATABASES['default']['OPTIONS'])"
    env = {"DATABASE_URL": "postgres://u@db.invalid:5432/crl", "CRL_VAR_DIR": str(tmp_path)}
    assert _settings_in_a_process(env, show) == str({"connect_timeout": 5, "options": "-c statement_timeout=30000"})
    tuned = {**env, "DB_CONNECT_TIMEOUT_SECONDS": "3", "DB_STATEMENT_TIMEOUT_SECONDS": "2.5"}
    assert _settings_in_a_process(tuned, show) == str({"connect_timeout": 3, "options": "-c statement_timeout=2500"})


@pytest.mark.django_db
def test_a_statement_longer_than_the_timeout_is_cancelled_by_the_database(settings):
    if connection.vendor != "postgresql":
        pytest.skip("statement_timeout is PostgreSQL's: set DATABASE_URL=postgres://...")
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == f"{int(settings.DB_STATEMENT_TIMEOUT_SECONDS)}s"  # from the settings' options
        cursor.execute("SET LOCAL statement_timeout = 300")  # this test's own bound: 0.3 s
        started = time.monotonic()
        with pytest.raises(OperationalError, match="statement timeout"):
            cursor.execute("SELECT pg_sleep(10)")
    assert time.monotonic() - started < 5
    assert outages.unavailable_service(OperationalError("canceling statement due to statement timeout")) == "database"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_through_gunicorn_a_database_that_refuses_and_one_that_hangs_on_a_lock_answer_503_in_bounded_time(
        other_process_database_url, gunicorn_server, token, dead_port, make_curriculum):
    from urllib.parse import urlsplit

    if connection.vendor != "postgresql":
        pytest.skip("the timeouts are PostgreSQL's: set DATABASE_URL=postgres://...")
    make_curriculum("demo", concepts=3)
    base = {k: v for k, v in os.environ.items() if k not in {"CACHE_URL", "REDIS_URL"}}
    base.update(LOG_LEVEL="WARNING", OMP_NUM_THREADS="1", DB_STATEMENT_TIMEOUT_SECONDS="1", DB_CONNECT_TIMEOUT_SECONDS="2")
    refused_url = urlsplit(other_process_database_url)._replace(netloc=f"postgres@127.0.0.1:{dead_port}").geturl()

    def get(port: int, path: str) -> tuple[int, str | None, float, bytes]:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", path, headers={"Authorization": f"Token {token}"})
        response = conn.getresponse()
        return response.status, response.getheader("Retry-After"), time.monotonic() - started, response.read()

    refusing = gunicorn_server({**base, "DATABASE_URL": refused_url})
    status, retry, _, body = get(refusing, "/api/v1/curricula/demo/policy")
    assert (status, retry) == (503, "5") and json.loads(body)["error"]["message"].startswith("the database is unreachable")

    hanging = gunicorn_server({**base, "DATABASE_URL": other_process_database_url})
    assert get(hanging, "/api/v1/curricula/demo/policy")[0] == 404  # answers: no active policy
    locked, release = threading.Event(), threading.Event()

    def hold_the_curricula_table():
        from django.db import connections, transaction

        with transaction.atomic():
            with connections["default"].cursor() as cursor:
                cursor.execute("LOCK TABLE curriculum_curriculum IN ACCESS EXCLUSIVE MODE")
                locked.set()
                release.wait(30)
        connections["default"].close()

    holder = threading.Thread(target=hold_the_curricula_table)
    holder.start()
    try:
        assert locked.wait(10)
        status, retry, seconds, body = get(hanging, "/api/v1/curricula/demo/policy")
    finally:
        release.set()
        holder.join()
    assert (status, retry) == (503, "5") and seconds < 5, (status, seconds, body)
    assert json.loads(body)["error"]["message"] == "the database did not answer in time; retry in 5 s"


# ---------------------------------------------------------------------------- a database that never answers
def test_a_query_past_its_deadline_has_its_connection_cut():
    import socket

    from crlsite.query_deadline import QueryDeadlines

    now = [0.0]
    deadlines = QueryDeadlines(seconds=2.0, clock=lambda: now[0])
    ours, database = socket.socketpair()
    deadlines._inflight[1] = (2.0, ours.fileno())  # a query sent on `ours` at t=0, with no answer yet

    now[0] = 1.9
    assert deadlines.enforce() == 0
    now[0] = 2.1
    assert deadlines.enforce() == 1 and deadlines.expired == 1
    ours.settimeout(1)
    assert ours.recv(1) == b""  # the blocked read returns: the connection is over
    ours.close()
    database.close()


@pytest.mark.integration
@pytest.mark.slow
def test_through_gunicorn_a_frozen_database_answers_503_within_the_query_deadline(
        database_proxy, gunicorn_server, token, make_curriculum):
    from urllib.parse import urlsplit

    from tests.conftest import _database_url_for_other_processes

    make_curriculum("demo", concepts=3)
    url = urlsplit(_database_url_for_other_processes())._replace(
        netloc=f"postgres@127.0.0.1:{database_proxy.port}").geturl()
    env = {k: v for k, v in os.environ.items() if k not in {"CACHE_URL", "REDIS_URL"}}
    env.update(DATABASE_URL=url, LOG_LEVEL="WARNING", OMP_NUM_THREADS="1", DB_STATEMENT_TIMEOUT_SECONDS="1",
               DB_QUERY_DEADLINE_SECONDS="2", DB_CONNECT_TIMEOUT_SECONDS="2")
    port = gunicorn_server(env)

    def get() -> tuple[int, float]:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/api/v1/curricula/demo/policy", headers={"Authorization": f"Token {token}"})
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - started

    assert get()[0] == 404  # answers through the proxy, and keeps its connection (CONN_MAX_AGE)
    database_proxy.frozen.set()
    frozen = [get() for _ in range(2)]  # the kept connection is cut at the deadline; a new one times out connecting
    database_proxy.frozen.clear()

    assert [status for status, _ in frozen] == [503, 503] and all(seconds < 6 for _, seconds in frozen), frozen
    assert get()[0] == 404  # a fresh connection once the database answers again
