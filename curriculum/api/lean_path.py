"""The lean path of `POST /api/v1/recommendations`: the hot endpoint answered in front of Django's request handling.

A learning app asks for the next concept after every answer, so this endpoint carries most of the API's traffic. Per
request, Django's handler (the WSGIRequest, ten middleware, URL resolution) and REST framework's view machinery
(the Request wrapper, content negotiation, authentication, permission and throttle objects, the Response and its
rendering) cost about a third of a recommendation's CPU (bench/README.md, `api_load.py`), more than the policy. This
WSGI wrapper answers the common request itself, with the same pieces the view uses, called directly:

- the token from the process's memory of valid tokens (`CachedTokenAuthentication.remembered`), the view's
  permission classes, and the view's throttle classes (counted once: the request is marked, so that REST
  framework's check, should the request reach it, does not count it again);
- the body read by the API's parser (only once the token is known: Django refuses an unknown client without reading
  its body) (`JSONBodyParser`: strict JSON, the same refusals) and validated by the view's
  serializer (`RecommendationRequestSerializer`);
- `serving.recommend` (the same answer, the same recommendation log row), rendered by the view's renderer;
- the response headers Django's stack gives this endpoint's answers (security headers, Content-Security-Policy,
  ``Allow``...), taken from the first answer Django gives in this process for each scheme (http, https) to a
  request without cookies, and only when it sets none, rather than written here.

Anything else goes to Django untouched (the body handed on as read): another path or method, a query string, a
cookie, a host Django would refuse, an http request that settings redirect to https, an Authorization header that is
not a remembered token, an Accept header other than JSON's, a body the parser or serializer refuses, a request over
its rate (REST framework answers the 429 with its Retry-After), a database outage in progress. An error while
recommending (an unknown curriculum, a database that does not answer) is kept in the environ and raised again by
the view, without a second attempt: Django's handling answers it (the 400, the 503 with the outage recorded, a
500 logged), so every error keeps the API's shape. Django's request_started and request_finished signals are sent
around the lean attempt (closing expired database connections before its query), and again by Django for a
request it answers after.

Turned off by ``API_LEAN_PATH=0`` (settings.API_LEAN_PATH): then every request takes Django's path.
"""
from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import setting_changed
from django.http.request import split_domain_port, validate_host
from django.urls import get_script_prefix, reverse

from .. import serving
from .authentication import CachedTokenAuthentication
from .parsers import MAX_BODY_BYTES, JSONBodyParser
from .renderers import ApiJSONRenderer
from .serializers import RecommendationRequestSerializer, recommendation_body, validate
from .throttling import THROTTLE_COUNTED
from .views import LEAN_PATH_ERROR, RecommendationsView

# Accept headers answered on the lean path: what REST framework would answer with the JSON renderer, unparametrised
# (a parameter such as ``indent`` may change the rendering: REST framework answers those).
_ACCEPTED = frozenset({"*/*", "application/*", "application/json"})
_OK = "200 OK"

StartResponse = Callable[..., Any]


class _User:
    """What the permission and throttle classes read of a request: its user (REST framework's ``request.user``)."""

    __slots__ = ("user", "auth")

    def __init__(self, user: Any, auth: Any) -> None:
        self.user, self.auth = user, auth


class _Answer:
    """A lean answer's body for the server: one bytes chunk; closing it sends Django's request_finished, as closing
    a Django response does."""

    def __init__(self, payload: bytes) -> None:
        self._payload = [payload]

    def __iter__(self):
        return iter(self._payload)

    def close(self) -> None:
        signals.request_finished.send(sender=WSGIHandler)


class LeanRecommendations:
    """WSGI middleware: ``POST /api/v1/recommendations`` answered without Django's handler where it can be (see the
    module); every other request, and every request it does not answer, is passed to ``app`` (Django's WSGI
    application) as it came. Thread-safe: gunicorn's threads share one instance."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self.app = app
        self._path: str | None = None
        # Django's response headers for this endpoint's 200, per scheme (False: http, True: https), Content-Length apart
        self._headers: dict[bool, list[tuple[str, str]]] = {}
        self._lock = threading.Lock()
        self._parser, self._renderer = JSONBodyParser(), ApiJSONRenderer()  # stateless: shared by every request
        self._view = RecommendationsView()
        setting_changed.connect(self._forget, weak=False, dispatch_uid=f"lean-path-{id(self)}")

    def _forget(self, **kwargs: Any) -> None:
        # a changed setting (tests) may change the headers or the URL: take them from Django again
        with self._lock:
            self._headers.clear()
            self._path = None

    # --------------------------------------------------------------------------------------------- WSGI
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if (environ.get("REQUEST_METHOD") != "POST" or environ.get("QUERY_STRING")
                or environ.get("SCRIPT_NAME") or environ.get("PATH_INFO") != self.path()):
            return self.app(environ, start_response)
        secure = _is_secure(environ)
        if not self._eligible(environ, secure):
            return self.app(environ, start_response)
        headers = self._headers.get(secure)
        if headers is None:  # the first request of this scheme: Django answers, and its headers are kept
            return self.app(environ, self._keeping_headers(start_response, secure))
        request = self._authorized(environ)
        if request is None:  # before the body is read: Django refuses an unknown client without reading it
            return self.app(environ, start_response)
        body = _read_body(environ)
        if body is None:  # no Content-Length (chunked), or one Django's parser would refuse: nothing was read
            return self.app(environ, start_response)
        payload = self._answer(environ, request, body)
        if payload is None:
            environ["wsgi.input"] = io.BytesIO(body)  # Django reads the body as sent
            return self.app(environ, start_response)
        start_response(_OK, [*headers, ("Content-Length", str(len(payload)))])
        return _Answer(payload)

    def path(self) -> str:
        """The endpoint's path below the script prefix, from the URL configuration (read once)."""
        if self._path is None:
            self._path = "/" + reverse("api-recommendations")[len(get_script_prefix()):]
        return self._path

    # --------------------------------------------------------------------------------------------- checks
    def _eligible(self, environ: dict[str, Any], secure: bool) -> bool:
        """Whether Django's middleware would pass this request to the view untouched and set nothing on its answer:
        no cookie (the session and CSRF middleware may answer one with Set-Cookie and Vary), its host allowed, no
        redirect to https, no refused user agent, no database outage in progress (whose end Django's middleware
        records); whether the client accepts the JSON renderer's answer as is; and one throttle class at most (a
        counted request is marked for all of them at once)."""
        from crlsite.outages import DATABASE, outage

        if "HTTP_COOKIE" in environ or outage(DATABASE).active or settings.DISALLOWED_USER_AGENTS:
            return False
        if len(self._view.throttle_classes) > 1:
            return False
        if settings.SECURE_SSL_REDIRECT and not secure:
            return False
        if settings.USE_X_FORWARDED_HOST and "HTTP_X_FORWARDED_HOST" in environ:
            return False
        host = environ.get("HTTP_HOST")
        if not host:
            return False
        allowed = settings.ALLOWED_HOSTS
        if settings.DEBUG and not allowed:  # as HttpRequest.get_host
            allowed = [".localhost", "127.0.0.1", "[::1]"]
        domain, _ = split_domain_port(host)
        if not domain or not validate_host(domain, allowed):
            return False
        accept = environ.get("HTTP_ACCEPT")
        return accept is None or all(part.strip() in _ACCEPTED for part in accept.split(","))

    def _keeping_headers(self, start_response: StartResponse, secure: bool) -> StartResponse:
        # kept from a 200 that sets no cookie (the request sent none: _eligible); Content-Length is the answer's own
        def keep(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            if status == _OK and not any(name.lower() == "set-cookie" for name, _ in headers):
                with self._lock:
                    self._headers[secure] = [(name, value) for name, value in headers
                                             if name.lower() != "content-length"]
            return start_response(status, headers, *exc_info)

        return keep

    def _authorized(self, environ: dict[str, Any]) -> _User | None:
        """The remembered user of the request's ``Authorization: Token <key>``, the header split as REST
        framework's TokenAuthentication splits it (its bytes, ISO-8859-1, on ASCII whitespace), when the view's
        permission classes let that user in; None for anything else (REST framework decides then)."""
        try:
            parts = environ.get("HTTP_AUTHORIZATION", "").encode("iso-8859-1").split()
            if len(parts) != 2 or parts[0].lower() != b"token":
                return None
            key = parts[1].decode()
        except UnicodeError:
            return None
        known = CachedTokenAuthentication.remembered(key)
        if known is None:
            return None
        request = _User(*known)
        view = self._view
        return request if all(p().has_permission(request, view) for p in view.permission_classes) else None

    def _answer(self, environ: dict[str, Any], request: _User, body: bytes) -> bytes | None:
        """The rendered answer, or None when Django must answer: before the budget is counted, with nothing done
        (REST framework parses, validates and throttles again: a refusal counts nothing, throttling.py); after,
        with the request marked as counted (THROTTLE_COUNTED) and the error that stopped the lean path kept for
        the view (LEAN_PATH_ERROR), which raises it instead of recommending again: Django's handling answers it,
        once (the 400 of an unknown curriculum, the 503 of a database that did not answer in time, a 500 logged
        as any view's)."""
        view = self._view
        try:
            data = self._parser.parse(io.BytesIO(body), environ.get("CONTENT_TYPE"))
            valid, errors = validate(RecommendationRequestSerializer, data)
            if errors is not None:
                return None
            if not all(throttle().allow_request(request, view) for throttle in view.throttle_classes):
                return None  # REST framework answers the 429 with its Retry-After
        except Exception:  # noqa: BLE001 - REST framework's parser, serializer or throttle answers it, as Django's path would
            return None
        environ[THROTTLE_COUNTED] = True
        # as Django's handler around a request (closing expired database connections before the query); Django
        # sends its own pair again for a request it answers after this
        signals.request_started.send(sender=WSGIHandler, environ=environ)
        try:
            rec = serving.recommend(**valid)
            return self._renderer.render(recommendation_body(rec), ApiJSONRenderer.media_type)
        except Exception as exc:  # noqa: BLE001 - the view raises it again: Django's handling answers it
            environ[LEAN_PATH_ERROR] = exc
            signals.request_finished.send(sender=WSGIHandler)  # a lean answer's is sent by its body's close
            return None


def _is_secure(environ: dict[str, Any]) -> bool:
    """HttpRequest.is_secure() of the request: the proxy's header where settings.SECURE_PROXY_SSL_HEADER names one
    and the request has it, else the WSGI scheme."""
    if settings.SECURE_PROXY_SSL_HEADER:
        header, secure_value = settings.SECURE_PROXY_SSL_HEADER
        value = environ.get(header)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return environ.get("wsgi.url_scheme") == "https"


def _read_body(environ: dict[str, Any]) -> bytes | None:
    """The request's body by its Content-Length (at most MAX_BODY_BYTES), or None without reading anything: no
    Content-Length (a chunked body: Django's path reads it), an invalid one, or one over the parser's bound."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    if length <= 0 or length > MAX_BODY_BYTES:
        return None
    return environ["wsgi.input"].read(length)


def lean_application(app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> Callable[..., Any]:
    """``app`` behind the lean path, or ``app`` itself when settings.API_LEAN_PATH is off."""
    return LeanRecommendations(app) if settings.API_LEAN_PATH else app
