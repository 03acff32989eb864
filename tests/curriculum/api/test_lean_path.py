"""The lean path of POST /api/v1/recommendations (curriculum/api/lean_path.py): where it answers, its answer is
Django's (status, headers, body but the recommendation id, the log row); everything else reaches Django as sent,
and a request it counted is never counted twice."""
from __future__ import annotations

import io
import json

import pytest
from django.core.handlers.wsgi import WSGIHandler

from curriculum.api.lean_path import LeanRecommendations, lean_application
from curriculum.api.throttling import THROTTLE_COUNTED
from curriculum.models import RecommendationLog

URL = "/api/v1/recommendations"


class Spy:
    """Django's WSGI application, counting the requests that reach it."""

    def __init__(self):
        self.django = WSGIHandler()
        self.calls = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        return self.django(environ, start_response)


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    # as Django's test client does around each request: request_started and request_finished would close the
    # database connection that holds the test's transaction
    from django.core import signals
    from django.db import close_old_connections

    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def token(api_user):
    from rest_framework.authtoken.models import Token

    return Token.objects.create(user=api_user).key


@pytest.fixture
def served(make_curriculum, make_real_policy):
    from curriculum.services import promote_policy

    curriculum = make_curriculum("demo", concepts=5)
    promote_policy(policy=make_real_policy(curriculum, seed=3), reason="lean path tests")
    return curriculum


@pytest.fixture
def warm(served, token):
    """(Spy, LeanRecommendations) whose http answers' headers Django's first answer gave (``spy.calls`` == 1)."""
    spy = Spy()
    lean = LeanRecommendations(spy)
    call(lean, body={"curriculum": "demo", "learner": "u1"}, token=token)
    return spy, lean


def call(app, *, body: bytes | dict | None = None, token: str | None = None, method: str = "POST", path: str = URL,
         query: str = "", scheme: str = "http", headers: dict[str, str] | None = None, length: bool = True):
    """(status code, {header name lower case: value}, body bytes, the environ) of one WSGI request to ``app``."""
    raw = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": query,
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "testserver",
        "wsgi.url_scheme": scheme, "wsgi.input": io.BytesIO(raw), "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0),
        "CONTENT_TYPE": "application/json",
    }
    if length:
        environ["CONTENT_LENGTH"] = str(len(raw))
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Token {token}"
    environ.update(headers or {})
    answer = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"], answer["headers"] = int(status.split()[0]), {k.lower(): v for k, v in response_headers}

    chunks = app(environ, start_response)
    try:
        content = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return answer["status"], answer["headers"], content, environ


def without_id(content: bytes):
    """The JSON body without its recommendation id (new per answer); a body that is not JSON as it is."""
    try:
        body = json.loads(content)
    except ValueError:
        return content
    if isinstance(body, dict):
        body.pop("recommendation_id", None)
    return body


def test_the_lean_answer_is_djangos_answer(served, token):
    spy = Spy()
    lean = LeanRecommendations(spy)
    body = {"curriculum": "demo", "learner": "u1", "candidates": ["c1", "c3"], "at": "2026-01-05T09:00:00Z"}
    first = call(lean, body=body, token=token)  # Django answers the first: the headers are taken from it
    assert spy.calls == 1 and first[0] == 200
    status, headers, content, environ = call(lean, body=body, token=token)
    assert spy.calls == 1 and environ.get(THROTTLE_COUNTED) is True  # answered on the lean path
    django = call(spy.django, body=body, token=token)
    assert status == django[0] == 200
    assert headers.pop("content-length") == str(len(content))
    django[1].pop("content-length")
    assert headers == django[1]
    assert "content-security-policy" in headers and headers["x-content-type-options"] == "nosniff"
    assert without_id(content) == without_id(django[2])
    assert without_id(content)["strategy"] == "policy"
    # logged as Django's answers are: one row per answer, under the id the client got
    assert RecommendationLog.objects.filter(id=json.loads(content)["recommendation_id"], concept=json.loads(content)[
        "concept"]).exists()
    assert RecommendationLog.objects.count() == 3


def test_https_answers_carry_djangos_https_headers(served, token, settings):
    settings.SECURE_HSTS_SECONDS = 3600
    spy = Spy()
    lean = LeanRecommendations(spy)
    body = {"curriculum": "demo", "learner": "u1"}
    call(lean, body=body, token=token)  # http: its own headers
    assert "strict-transport-security" not in call(lean, body=body, token=token)[1]
    call(lean, body=body, token=token, scheme="https")  # the first https one: Django's
    assert spy.calls == 2
    status, headers, *_ = call(lean, body=body, token=token, scheme="https")
    assert spy.calls == 2 and status == 200 and headers["strict-transport-security"] == "max-age=3600"


@pytest.mark.parametrize("case", [
    dict(body=b'{"curriculum": "demo", "learner": "u1", "learner": "u2"}'),  # a key twice
    dict(body=b'{"curriculum": "demo", "learner": '),  # malformed
    dict(body={"curriculum": "demo", "learner": "u1", "candidate": ["c1"]}),  # a misspelt field
    dict(body={"curriculum": "demo", "learner": "   "}),  # a blank learner
    dict(body={"curriculum": "nope", "learner": "u1"}),  # an unknown curriculum: after the throttle
    dict(body={"curriculum": "demo", "learner": "u1", "candidates": ["c9"]}),  # an unknown concept
    dict(body={"curriculum": "demo", "learner": "u1"}, token="not-a-token"),
    dict(body={"curriculum": "demo", "learner": "u1"}, token=None),
    dict(body={"curriculum": "demo", "learner": "u1"}, headers={"HTTP_HOST": "evil.example"}),
    dict(body={"curriculum": "demo", "learner": "u1"}, headers={"HTTP_ACCEPT": "text/html"}),
    dict(body={"curriculum": "demo", "learner": "u1"}, headers={"CONTENT_TYPE": "text/plain"}),
    dict(body={"curriculum": "demo", "learner": "u1"}, query="x=1"),
    dict(body={"curriculum": "demo", "learner": "u1"}, method="PUT"),
    dict(body={"curriculum": "demo", "learner": "u1"}, length=False, headers={"HTTP_TRANSFER_ENCODING": "chunked"}),
], ids=["duplicate-key", "malformed", "unknown-field", "blank-learner", "unknown-curriculum", "unknown-concept",
        "bad-token", "no-token", "bad-host", "accept-html", "text-plain", "query-string", "put", "chunked"])
def test_what_the_lean_path_does_not_answer_django_answers_as_sent(served, token, case):
    spy = Spy()
    lean = LeanRecommendations(spy)
    call(lean, body={"curriculum": "demo", "learner": "u0"}, token=token)  # Django's headers taken
    case = {"token": token, **case}
    status, headers, content, _ = call(lean, **case)
    assert spy.calls == 2  # reached Django
    django = call(spy.django, **case)
    assert (status, without_id(content)) == (django[0], without_id(django[2]))
    assert status in (400, 401, 405, 406, 415) or (case.get("query") and status == 200)


@pytest.fixture
def rate(throttle_rate):
    return throttle_rate("3/min")


def test_a_request_counted_on_the_lean_path_is_counted_once(served, token, rate):
    spy = Spy()
    lean = LeanRecommendations(spy)
    call(lean, body={"curriculum": "demo", "learner": "u0"}, token=token)  # 1 of 3, by Django (headers taken)
    # counted by the lean path, then answered (400) by Django, which must not count it again: 2 and 3 of 3
    for _ in range(2):
        status, _, content, environ = call(lean, body={"curriculum": "nope", "learner": "u1"}, token=token)
        assert status == 400 and environ[THROTTLE_COUNTED] is True and "nope" in json.loads(content)["error"]["message"]
    status, headers, content, environ = call(lean, body={"curriculum": "demo", "learner": "u1"}, token=token)
    assert status == 429 and 1 <= int(headers["retry-after"]) <= 120  # REST framework's refusal
    assert THROTTLE_COUNTED not in environ and spy.calls == 4


def test_a_forgotten_token_is_checked_again(warm, token):
    from curriculum.api.authentication import CachedTokenAuthentication
    from rest_framework.authtoken.models import Token

    spy, lean = warm
    body = {"curriculum": "demo", "learner": "u1"}
    assert call(lean, body=body, token=token)[0] == 200 and spy.calls == 1
    Token.objects.filter(key=token).delete()  # forgotten by this process at once (post_delete)
    assert CachedTokenAuthentication.remembered(token) is None
    assert call(lean, body=body, token=token)[0] == 401 and spy.calls == 2


def test_a_database_outage_goes_to_django(warm, token):
    from crlsite.outages import DATABASE, outage

    spy, lean = warm
    body = {"curriculum": "demo", "learner": "u1"}
    database = outage(DATABASE)
    database.failed(RuntimeError("test outage"))
    try:
        assert call(lean, body=body, token=token)[0] == 200 and spy.calls == 2
        assert not database.active  # Django's middleware ended it, its queries having succeeded
    finally:
        if database.active:
            database.recovered()
    call(lean, body=body, token=token)
    assert spy.calls == 2


class Counted:
    """serving.recommend, counting its calls (and raising ``error`` once, when given)."""

    def __init__(self, monkeypatch, error: Exception | None = None):
        from curriculum import serving

        self.calls, self.error, self.real = 0, error, serving.recommend
        monkeypatch.setattr(serving, "recommend", self)

    def __call__(self, **kwargs):
        self.calls += 1
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return self.real(**kwargs)


def test_an_error_after_counting_is_answered_by_django_without_a_second_attempt(served, token, monkeypatch):
    spy = Spy()
    lean = LeanRecommendations(spy)
    call(lean, body={"curriculum": "demo", "learner": "u0"}, token=token)
    recommend = Counted(monkeypatch)
    status, _, content, environ = call(lean, body={"curriculum": "nope", "learner": "u1"}, token=token)
    assert (status, recommend.calls, spy.calls) == (400, 1, 2) and "nope" in json.loads(content)["error"]["message"]
    assert environ[THROTTLE_COUNTED] is True


def test_a_database_that_fails_is_a_503_after_one_attempt_and_an_outage(served, token, monkeypatch):
    from django.db import OperationalError

    from crlsite.outages import DATABASE, outage

    spy = Spy()
    lean = LeanRecommendations(spy)
    call(lean, body={"curriculum": "demo", "learner": "u0"}, token=token)
    recommend = Counted(monkeypatch, OperationalError("canceling statement due to statement timeout"))
    database = outage(DATABASE)
    try:
        status, headers, content, _ = call(lean, body={"curriculum": "demo", "learner": "u1"}, token=token)
        assert (status, recommend.calls, spy.calls) == (503, 1, 2)  # one wait, not two
        assert headers["retry-after"] and "did not answer in time" in json.loads(content)["error"]["message"]
        assert database.active  # recorded by Django's middleware, as for any view
        assert headers["x-frame-options"] == "DENY"  # Django's answer, through its middleware
    finally:
        if database.active:
            database.recovered()


def test_a_request_with_a_cookie_goes_to_django_and_its_headers_are_never_kept(served, token):
    spy = Spy()
    lean = LeanRecommendations(spy)
    body = {"curriculum": "demo", "learner": "u1"}
    cookie = {"HTTP_COOKIE": "csrftoken=bad; sessionid=x"}
    assert call(lean, body=body, token=token, headers=cookie)[0] == 200 and spy.calls == 1
    assert call(lean, body=body, token=token)[0] == 200 and spy.calls == 2  # the headers are taken from this one
    status, headers, *_ = call(lean, body=body, token=token)
    assert status == 200 and spy.calls == 2
    assert "set-cookie" not in headers and "cookie" not in headers.get("vary", "").lower()
    call(lean, body=body, token=token, headers=cookie)
    assert spy.calls == 3


@pytest.mark.parametrize("header", ["Token\xa0{key}", "Token {key} extra", "Bearer {key}", "{key}"])
def test_an_authorization_header_rest_framework_refuses_goes_to_django(warm, token, header):
    spy, lean = warm
    body = {"curriculum": "demo", "learner": "u1"}
    status, _, content, _ = call(lean, body=body, headers={"HTTP_AUTHORIZATION": header.format(key=token)})
    assert status == 401 and spy.calls == 2 and json.loads(content)["error"]["message"]


@pytest.mark.parametrize("accept", ["*/*", "application/json", "application/*", "application/json, */*"])
def test_json_accept_headers_are_answered_on_the_lean_path(warm, token, accept):
    spy, lean = warm
    body = {"curriculum": "demo", "learner": "u1"}
    status, headers, content, environ = call(lean, body=body, token=token, headers={"HTTP_ACCEPT": accept})
    assert status == 200 and spy.calls == 1 and environ[THROTTLE_COUNTED] is True
    assert headers["content-type"] == "application/json" and json.loads(content)["strategy"] == "policy"


def test_a_refused_user_agent_is_left_to_django(served, token, settings):
    import re

    settings.DISALLOWED_USER_AGENTS = [re.compile("^evil")]  # before Django's handler is built: its middleware reads it
    spy = Spy()
    lean = LeanRecommendations(spy)
    body = {"curriculum": "demo", "learner": "u1"}
    assert call(lean, body=body, token=token)[0] == 200  # Django's headers kept
    assert call(lean, body=body, token=token, headers={"HTTP_USER_AGENT": "evil-bot"})[0] == 403
    assert spy.calls == 2


def test_an_http_request_settings_redirect_is_left_to_django(served, token, settings):
    settings.SECURE_SSL_REDIRECT = True
    spy = Spy()
    lean = LeanRecommendations(spy)
    body = {"curriculum": "demo", "learner": "u1"}
    assert call(lean, body=body, token=token, scheme="https")[0] == 200
    assert call(lean, body=body, token=token, scheme="https")[0] == 200 and spy.calls == 1  # https: the lean path
    assert call(lean, body=body, token=token)[0] == 301 and spy.calls == 2


def test_the_path_is_read_without_the_threads_script_prefix(served):
    from django.urls import set_script_prefix

    set_script_prefix("/mounted/")
    try:
        assert LeanRecommendations(Spy()).path() == URL
    finally:
        set_script_prefix("/")


def test_other_paths_reach_django(served, token):
    spy = Spy()
    lean = LeanRecommendations(spy)
    status, _, content, _ = call(lean, method="GET", path="/api/v1/curricula/demo/policy", token=token, body=b"")
    assert status == 200 and json.loads(content)["version"] == 1 and spy.calls == 1


def test_the_setting_turns_it_off(settings):
    app = WSGIHandler()
    settings.API_LEAN_PATH = False
    assert lean_application(app) is app
    settings.API_LEAN_PATH = True
    assert isinstance(lean_application(app), LeanRecommendations)


@pytest.mark.parametrize("setting, closed", [("", [100, 200]), ("3", [3, 6, 9, 99, 201]), ("0", [])])
def test_gunicorn_closes_a_keep_alive_connection_after_its_requests(setting, closed, monkeypatch):
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    monkeypatch.setenv("WEB_KEEPALIVE_REQUESTS", setting)
    spec = importlib.util.spec_from_file_location("gunicorn_conf", Path(__file__).resolve().parents[3] / "gunicorn.conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    marked = []
    for number in range(1, 202):
        req = SimpleNamespace(req_number=number, must_close=False)
        conf.pre_request(None, req)
        if req.must_close:
            marked.append(number)
    assert set(closed) <= set(marked) and len(marked) == (201 // int(setting or 100) if setting != "0" else 0)


def test_gunicorn_refuses_a_bad_keep_alive_setting(monkeypatch):
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("WEB_KEEPALIVE_REQUESTS", "many")
    spec = importlib.util.spec_from_file_location("gunicorn_conf", Path(__file__).resolve().parents[3] / "gunicorn.conf.py")
    with pytest.raises(SystemExit, match="WEB_KEEPALIVE_REQUESTS must be a whole number"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
