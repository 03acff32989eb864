"""Worker health for the admin index: which Celery workers are online and on which queues, how many messages
wait in each queue, which jobs run (and for how long), and the plain warnings an operator acts on.

Nothing here may hang or break a page: the broker is asked with short timeouts (one connection attempt,
bounded socket reads, one ``active_queues`` broadcast that waits ``timeout`` seconds for replies), and any
broker failure becomes ``broker_error`` with what could still be read from the database. A queued job's page asks
only who listens on its queue (``queue_listeners``, ``waiting_note``), an answer cached for 15 seconds.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from .jobs.lifecycle import JOB_MODELS
from .jobs.publishing import job_queues, queue_length
from .models import Job

log = logging.getLogger(__name__)

# Seconds the admin index waits for workers to answer (they answer within milliseconds when alive).
INSPECT_TIMEOUT_SECONDS = 1.0
# How long a queued job's page reuses the workers' last answer (queue_listeners), and where it keeps it.
LISTENERS_CACHE_SECONDS = 15
LISTENERS_CACHE_KEY = "crl:queue-listeners"


@dataclass(frozen=True)
class WorkerInfo:
    """One online worker: its node name and the queues it consumes."""

    name: str
    queues: tuple[str, ...]


@dataclass(frozen=True)
class QueueInfo:
    """One queue: messages in the broker (None: unknown), jobs queued in the database for it, who listens."""

    name: str
    messages: int | None
    queued_jobs: int
    workers: tuple[str, ...]

    @property
    def stranded(self) -> bool:
        """Work waits here and no worker listens (only said when the workers could be asked)."""
        return not self.workers and (self.queued_jobs > 0 or bool(self.messages))


@dataclass(frozen=True)
class RunningJob:
    """A job the database says is running: its worker, and seconds since it started."""

    job: Job
    worker: str
    runtime_s: float | None


@dataclass
class WorkerHealth:
    """What the admin index shows (see ``worker_health``)."""

    broker: str  # the broker's kind and place, without credentials
    broker_error: str = ""  # "" when the broker answered
    workers: list[WorkerInfo] = field(default_factory=list)
    queues: list[QueueInfo] = field(default_factory=list)
    running: list[RunningJob] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """Sentences for the operator, most urgent first."""
        out = []
        if self.broker_error:
            out.append(f"The broker did not answer ({self.broker_error}): workers and queue lengths are unknown; "
                       f"jobs below are read from the database.")
            return out
        for queue in self.queues:
            if queue.stranded:
                waiting = []
                if queue.queued_jobs:
                    waiting.append(f"{queue.queued_jobs} queued job{'s' if queue.queued_jobs != 1 else ''}")
                if queue.messages:
                    waiting.append(f"{queue.messages} message{'s' if queue.messages != 1 else ''} in the broker")
                one = len(waiting) == 1 and (queue.queued_jobs or queue.messages) == 1
                out.append(f"No worker listens on queue \"{queue.name}\", where {' and '.join(waiting)} "
                           f"{'waits' if one else 'wait'}: start one with: celery -A crlsite worker -Q {queue.name}")
        if not self.workers:
            out.append("No Celery worker is online.")
        return out


def worker_health(*, timeout: float = INSPECT_TIMEOUT_SECONDS, app=None, now: dt.datetime | None = None,
                  cached: bool = False) -> WorkerHealth:
    """Ask the broker and the workers, within about 3 x ``timeout`` seconds in the worst case; never raises for a
    broker problem (it is reported in ``broker_error``). ``app`` defaults to crlsite.celery.app (a seam for tests).
    ``cached``: take the workers' queues from ``queue_listeners``' cache when it holds them (LISTENERS_CACHE_SECONDS),
    and store them there after a broadcast: the broadcast always waits out ``timeout`` (it cannot know how many
    workers will answer), which made every admin index page take about 2 s. Queue lengths and jobs are read live.
    """
    if app is None:
        from crlsite.celery import app
    now = now or timezone.now()
    queue_of = job_queues()
    names = sorted({*queue_of.values(), getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")})
    queued = {name: 0 for name in names}
    running: list[RunningJob] = []
    for model in JOB_MODELS:
        queued[queue_of[model]] += model.objects.filter(status=Job.Status.QUEUED).count()
        for job in model.objects.filter(status=Job.Status.RUNNING).select_related("curriculum").order_by("started_at"):
            runtime = (now - job.started_at).total_seconds() if job.started_at else None
            running.append(RunningJob(job=job, worker=job.worker, runtime_s=runtime))

    health = WorkerHealth(broker=_describe(app), running=running)
    messages: dict[str, int | None] = {name: None for name in names}
    listeners: dict[str, list[str]] = {name: [] for name in names}
    try:
        with _connection(app, timeout) as connection:
            channel = connection.default_channel
            for name in names:
                messages[name] = queue_length(channel, name)
            replies = _cached_replies() if cached else None
            if replies is None:
                replies = app.control.inspect(timeout=timeout, connection=connection).active_queues() or {}
                if cached:
                    _store_listeners(_listeners_of(replies))
    except Exception as exc:  # noqa: BLE001 - any broker failure degrades the panel, never the page
        log.warning("worker health: broker %s did not answer: %s: %s", health.broker, type(exc).__name__, exc)
        health.broker_error = f"{type(exc).__name__}: {exc}"[:300]
        health.queues = [QueueInfo(name=n, messages=None, queued_jobs=queued[n], workers=()) for n in names]
        return health

    for worker, queues in sorted(replies.items()):
        consumed = tuple(sorted(q.get("name", "") for q in queues or ()))
        health.workers.append(WorkerInfo(name=worker, queues=consumed))
        for queue in consumed:
            listeners.setdefault(queue, []).append(worker)
            messages.setdefault(queue, None)
            queued.setdefault(queue, 0)
    health.queues = [QueueInfo(name=n, messages=messages[n], queued_jobs=queued[n], workers=tuple(listeners[n]))
                     for n in sorted(listeners)]
    return health


def _connection(app, timeout: float):
    """An open broker connection for reading that gives up after ``timeout`` seconds (one attempt, bounded socket
    reads); raises the broker's error."""
    transport_options = {
        **(app.conf.broker_transport_options or {}),
        "max_retries": 0, "socket_connect_timeout": timeout, "socket_timeout": timeout,
    }
    connection = app.connection_for_read(connect_timeout=timeout, transport_options=transport_options)
    try:
        connection.ensure_connection(max_retries=0, timeout=timeout)
    except Exception:
        connection.release()
        raise
    return connection


def _listeners_of(replies: dict[str, list[dict[str, str]] | None]) -> dict[str, tuple[str, ...]]:
    """Queue name -> the workers consuming it (sorted), from ``active_queues``' replies {worker: [{"name": queue},
    ...]}; a queue nobody consumes is absent."""
    listeners: dict[str, list[str]] = {}
    for worker, queues in sorted(replies.items()):
        for queue in queues or ():
            listeners.setdefault(queue.get("name", ""), []).append(worker)
    return {queue: tuple(sorted(names)) for queue, names in listeners.items()}


def _cached_listeners() -> dict[str, Any] | None:
    """queue_listeners' cache entry, {"listeners": its answer (None: the broker did not answer)}, or None when the
    cache holds none or is down (logged: the caller broadcasts instead)."""
    try:
        return cache.get(LISTENERS_CACHE_KEY)
    except Exception as exc:  # noqa: BLE001 - a cache outage degrades to asking the workers
        log.warning("queue listeners: cache unavailable: %s: %s", type(exc).__name__, exc)
        return None


def _cached_replies() -> dict[str, list[dict[str, str]]] | None:
    """``active_queues``' replies ({worker: [{"name": queue}, ...]}) rebuilt from queue_listeners' cache, or None
    when it holds no answer (the caller broadcasts)."""
    cached = _cached_listeners()
    if cached is None or cached.get("listeners") is None:
        return None
    replies: dict[str, list[dict[str, str]]] = {}
    for queue, workers in cached["listeners"].items():
        for worker in workers:
            replies.setdefault(worker, []).append({"name": queue})
    return replies


def _store_listeners(answer: dict[str, tuple[str, ...]] | None) -> None:
    """Keep queue -> workers in Django's cache for LISTENERS_CACHE_SECONDS (None: the broker did not answer)."""
    try:
        cache.set(LISTENERS_CACHE_KEY, {"listeners": answer}, LISTENERS_CACHE_SECONDS)
    except Exception:  # noqa: BLE001 - the answer is still right without the cache
        pass


def queue_listeners(*, timeout: float = INSPECT_TIMEOUT_SECONDS, app=None) -> dict[str, tuple[str, ...]] | None:
    """Queue name -> the workers consuming it (sorted names; a queue nobody consumes is absent), or None when the
    broker did not answer. One ``active_queues`` broadcast, at most about 2 x ``timeout`` seconds, its answer kept in
    Django's cache for LISTENERS_CACHE_SECONDS (a queued job's page asks on every load); a cache outage only costs
    the broadcast. Never raises for a broker or cache problem."""
    cached = _cached_listeners()
    if cached is not None:
        return cached["listeners"]
    if app is None:
        from crlsite.celery import app
    try:
        with _connection(app, timeout) as connection:
            answer = _listeners_of(app.control.inspect(timeout=timeout, connection=connection).active_queues() or {})
    except Exception as exc:  # noqa: BLE001 - any broker failure: "unknown", never a broken page
        log.warning("queue listeners: broker %s did not answer: %s: %s", _describe(app), type(exc).__name__, exc)
        answer = None
    _store_listeners(answer)
    return answer


def waiting_note(*, job: Job) -> str:
    """What a queued job's page says about who will run it: "" when a worker listens on its queue (or the job is not
    queued), else a sentence naming the queue and the command that starts a worker for it, or saying that the
    broker could not be asked."""
    queue = job_queues().get(type(job))
    if job.status != Job.Status.QUEUED or queue is None:
        return ""
    listeners = queue_listeners()
    if listeners is None:
        return (f"The broker did not answer: whether a worker listens on queue \"{queue}\" is unknown; this job "
                f"waits until one takes it.")
    if listeners.get(queue):
        return ""
    return (f"No worker listens on queue \"{queue}\": this job waits until one starts. Start one with: "
            f"celery -A crlsite worker -Q {queue}")


def _describe(app) -> str:
    url = str(app.conf.broker_url or "")
    scheme, _, rest = url.partition("://")
    host = rest.rsplit("@", 1)[-1]  # drop any user:password
    return f"{scheme}://{host}" if host else f"{scheme}://"


def format_duration(seconds: float | None) -> str:
    """``3725`` -> ``"1 h 02 min 05 s"``; under a minute ``"42 s"``; None -> ``"-"``."""
    if seconds is None:
        return "-"
    total = max(int(round(seconds)), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
