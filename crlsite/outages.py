"""When the database (or the artifact storage) cannot be reached: answer 503 with Retry-After, and log each outage once.

A request that fails because a service it needs is away is not a bug: clients that retry on 503 must get a 503 (the
API's error shape under /api/, a short page elsewhere) with ``Retry-After`` (settings.CRL_RETRY_AFTER_SECONDS),
never a 500. One outage is logged twice per process, when it begins and when the service answers again (with how
many requests were answered 503), not once per request; Django's own per-response error log is skipped for them.

What counts as unreachable: the database's OperationalError and InterfaceError (connection refused or lost, the
connect or statement timeout of settings.DATABASES, a lock the database gave up waiting for) and botocore's
connection errors and timeouts of an object store. The database's outage ends with the first request whose queries
succeed; the storage's, since its use is rare, after STORAGE_QUIET_SECONDS without a failure.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

log = logging.getLogger(__name__)

DATABASE, STORAGE = "database", "artifact storage"
STORAGE_QUIET_SECONDS = 60.0  # a storage failure after this long without one begins a new outage


def retry_after_seconds() -> int:
    return int(getattr(settings, "CRL_RETRY_AFTER_SECONDS", 5))


def unavailable_service(exc: BaseException) -> str | None:
    """DATABASE or STORAGE when ``exc`` says that service cannot be reached (or did not answer in time), else None."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return DATABASE
    try:
        from botocore.exceptions import ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
    except ImportError:  # pragma: no cover - django-storages[s3] brings botocore
        return None
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)):
        return STORAGE
    return None


def describe(exc: BaseException) -> str:
    """What the client is told (no server detail): the service, and whether it refused or did not answer in time."""
    service = unavailable_service(exc) or "a service"
    text = f"{exc} {exc.__cause__ or ''}".lower()
    if "timeout" in text or "timed out" in text or "canceling statement" in text:
        return f"the {service} did not answer in time"
    return f"the {service} is unreachable"


class Outage:
    """One service's outage as this process sees it: ``failed`` on each request it fails (the first one logs that
    the outage began), ``recovered`` when the service answers again (logged once, with the count). Thread-safe:
    a web process's threads share it. ``quiet_s``: a failure after this long without one begins a new outage
    (for a service whose recovery is not observed)."""

    def __init__(self, service: str, *, quiet_s: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.service, self.quiet_s, self._clock = service, quiet_s, clock
        self._lock = threading.Lock()
        self.since: float | None = None
        self.last: float | None = None
        self.requests = 0

    @property
    def active(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> None:
        now = self._clock()
        with self._lock:
            begins = self.since is None or (self.quiet_s is not None and now - (self.last or now) > self.quiet_s)
            if begins:
                self.since, self.requests = now, 0
            self.last = now
            self.requests += 1
        if begins:
            log.error("%s unavailable (%s: %s): answering 503 with Retry-After %d s until it answers again "
                      "(logged once per outage)", self.service, type(exc).__name__, str(exc).strip()[:300],
                      retry_after_seconds())

    def recovered(self) -> None:
        with self._lock:
            if self.since is None:
                return
            lasted, requests = self._clock() - self.since, self.requests
            self.since = self.last = None
            self.requests = 0
        log.warning("%s answering again after %.1f s of outage; %d request(s) were answered 503", self.service,
                    lasted, requests)


OUTAGES = {DATABASE: Outage(DATABASE), STORAGE: Outage(STORAGE, quiet_s=STORAGE_QUIET_SECONDS)}


def outage(service: str) -> Outage:
    """This process's record of ``service``'s outage (DATABASE or STORAGE)."""
    return OUTAGES[service]


def unavailable_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """503 with Retry-After: the API's error shape under /api/, a page that needs no database elsewhere."""
    from curriculum.api.errors import is_api_request, service_unavailable

    message, retry = describe(exc), retry_after_seconds()
    if is_api_request(request):
        response = service_unavailable(message=f"{message}; retry in {retry} s", retry_after=retry)
    else:  # rendered without the request: the admin's context would ask the database who the user is
        response = HttpResponse(render_to_string("503.html", {"message": message, "retry_after": retry}), status=503)
        response["Retry-After"] = str(retry)
    response._has_been_logged = True  # the outage is logged once (Outage), not per response by django.request
    return response


class ServiceUnavailableMiddleware:
    """Turns a view's failure to reach the database or the storage into a 503 with Retry-After (see the module),
    and ends the database's outage at the first request whose queries succeed."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        from . import query_deadline

        self.get_response = get_response
        query_deadline.install()  # a process that serves requests: its queries get the client-side deadline too

    def __call__(self, request: HttpRequest) -> HttpResponse:
        database = outage(DATABASE)
        if not database.active:
            return self.get_response(request)
        answered = []  # during an outage only: did a query of this request succeed?

        def watch(execute, sql, params, many, context):
            result = execute(sql, params, many, context)
            answered.append(True)
            return result

        with connection.execute_wrapper(watch):
            response = self.get_response(request)
        if answered and not getattr(request, "_crl_unavailable", False):
            database.recovered()
        return response

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        service = unavailable_service(exc)
        if service is None:
            return None
        request._crl_unavailable = True
        outage(service).failed(exc)
        return unavailable_response(request, exc)
