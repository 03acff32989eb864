"""Job messages in the broker: the queue each job's task goes to, how many messages wait there, and publishing again,
idempotently, the jobs whose message was lost.

A job launched while the broker was away, or whose message the broker lost (a Redis restarted without persistence),
stays ``queued`` with no message. ``requeue_queued_jobs`` publishes those again once they are CRL_JOB_REQUEUE_SECONDS
old, but only for a queue that holds no message at all: a job waiting behind others keeps its one message (a
second pass publishes nothing while the first one's messages wait), and a queue the broker cannot be asked about is
left alone (nothing could be published there anyway). Every worker runs it every CRL_JOB_WATCH_SECONDS
(training/jobs/watch.py) and when it starts, Celery beat every minute: no job waits on beat alone. A message
published twice is harmless: the claim (queued -> running) happens once.
"""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings

from ..models import Job
from . import lifecycle
from .lifecycle import JOB_MODELS, TASK_NAMES

log = logging.getLogger(__name__)

# Seconds to wait for the broker when counting messages (one connection attempt, bounded socket reads).
BROKER_TIMEOUT_SECONDS = 1.0


def requeue_seconds() -> float:
    return float(getattr(settings, "CRL_JOB_REQUEUE_SECONDS", 30.0))


def job_queues() -> dict[type[Job], str]:
    """The queue each job's task goes to (settings.CELERY_TASK_ROUTES, else the default queue)."""
    routes = getattr(settings, "CELERY_TASK_ROUTES", {}) or {}
    default = getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")
    return {model: (routes.get(TASK_NAMES[model]) or {}).get("queue", default) for model in JOB_MODELS}


def queue_length(channel, name: str) -> int:
    """Messages waiting in queue ``name`` on an open channel: a passive declare (Redis: LLEN over the priority lists;
    the filesystem transport: the message files); a queue the broker does not know yet holds 0. Connection errors
    are raised."""
    try:
        return int(channel.queue_declare(queue=name, passive=True).message_count)
    except Exception as exc:  # noqa: BLE001 - a missing queue is an empty one; connection errors re-raise
        errors = tuple(getattr(channel.connection, "connection_errors", ())) + (OSError, TimeoutError)
        if isinstance(exc, errors):
            raise
        return 0


def waiting_messages(queues: set[str], *, timeout: float = BROKER_TIMEOUT_SECONDS, app=None) -> dict[str, int | None]:
    """Messages waiting in each of ``queues``; None for every queue when the broker does not answer within about
    2 x ``timeout`` seconds (logged, never raised). ``app`` defaults to crlsite.celery.app."""
    if app is None:
        from crlsite.celery import app
    transport_options = {**(app.conf.broker_transport_options or {}),
                         "max_retries": 0, "socket_connect_timeout": timeout, "socket_timeout": timeout}
    try:
        with app.connection_for_read(connect_timeout=timeout, transport_options=transport_options) as connection:
            connection.ensure_connection(max_retries=0, timeout=timeout)
            return {name: queue_length(connection.default_channel, name) for name in sorted(queues)}
    except Exception as exc:  # noqa: BLE001 - a broker that is away: nothing can be published either
        log.warning("could not count the messages waiting in %s: %s: %s", ", ".join(sorted(queues)),
                    type(exc).__name__, exc)
        return dict.fromkeys(queues)


def requeue_queued_jobs(*, older_than: float | None = None) -> int:
    """Publish again the task of every job still ``queued`` after ``older_than`` seconds (CRL_JOB_REQUEUE_SECONDS
    by default) whose queue holds no message (see the module). Returns how many were published."""
    cutoff = lifecycle._now() - dt.timedelta(seconds=requeue_seconds() if older_than is None else older_than)
    waiting = {model: list(model.objects.filter(status=Job.Status.QUEUED, created_at__lt=cutoff).order_by("created_at"))
               for model in JOB_MODELS}
    waiting = {model: queued for model, queued in waiting.items() if queued}
    if not waiting:
        return 0
    queue_of = job_queues()
    messages = waiting_messages({queue_of[model] for model in waiting})
    published = 0
    for model, queued in waiting.items():
        if messages[queue_of[model]] != 0:  # their messages wait there behind others (or the broker is away)
            continue
        for job in queued:
            published += bool(lifecycle._enqueue(job=job))
    if published:
        log.info("re-published %d queued job(s) whose message was lost", published)
    return published
