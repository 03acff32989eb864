"""The Celery application: configuration comes from Django settings (CELERY_*)."""
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from celery import Celery, signals

from crlsite.worker_threads import apply_torch_threads, torch_threads_per_process
from training.rl.cpu_threads import available_cores

logger = logging.getLogger(__name__)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")

app = Celery("crlsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)

# Seconds a web request may wait on the broker when it enqueues work: to connect, and for each socket read/write.
PUBLISH_TIMEOUT_SECONDS = 0.5


@app.on_after_configure.connect
def create_filesystem_broker_folders(sender: Celery, **kwargs) -> None:
    # kombu's filesystem transport fails on a missing folder; create them in every process (web, worker)
    # as soon as the configuration is read, before anything is sent or consumed.
    if str(sender.conf.broker_url or "").startswith("filesystem://"):
        options = sender.conf.broker_transport_options or {}
        for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
            if options.get(key):
                Path(options[key]).mkdir(parents=True, exist_ok=True)


def publish(task_name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
            timeout: float = PUBLISH_TIMEOUT_SECONDS, **options: Any) -> bool:
    """Send one task message without ever holding the caller long: True if the broker took it, else False.

    For enqueues from a request (after a commit): a broker that is down, refuses, or accepts and never answers
    costs at most about 2 x `timeout` seconds (one connection attempt with `timeout` to connect, socket reads
    and writes bounded by it; no publish retry), is logged as a warning, and is never raised. The work must
    therefore be recoverable without the message (a periodic task or a worker-start hook that finds it), as
    the learner-state re-encoding is (curriculum/tasks.py). `options` go to `app.send_task` (queue, countdown...).

    A fresh connection per call, not the shared producer pool: a pooled connection to a broker that hung
    would be reused, and its reads have no timeout.
    """
    started = time.monotonic()
    transport_options = {
        "max_retries": 0,  # kombu: connect once (default_channel's ensure_connection)
        "socket_connect_timeout": timeout,  # redis transport
        "socket_timeout": timeout,
        "socket_keepalive": True,
    }
    try:
        with app.connection_for_write(connect_timeout=timeout, transport_options=transport_options) as connection:
            app.send_task(task_name, args=list(args), kwargs=kwargs or {}, connection=connection, retry=False,
                          **options)
        return True
    except Exception as exc:  # noqa: BLE001 - any broker failure: the caller's work has happened, log and go on
        logger.warning("could not enqueue %s (args %s) within %.1f s: %s: %s", task_name, list(args),
                       time.monotonic() - started, type(exc).__name__, exc)
        return False


# ---------------------------------------------------------------- the database's statement timeout in workers
@signals.worker_init.connect
def worker_statement_timeout(**kwargs) -> None:
    """A worker's bulk statements (a COPY block, a curriculum's reviews read for extraction) run longer than a web
    request's: its connections take CRL_WORKER_DB_STATEMENT_TIMEOUT_SECONDS (before any is opened; pool processes
    inherit it) instead of DB_STATEMENT_TIMEOUT_SECONDS."""
    from django.conf import settings
    from django.db import connections

    options = settings.DATABASES["default"].get("OPTIONS", {})
    if "statement_timeout" in str(options.get("options", "")):
        options["options"] = settings.CRL_WORKER_DB_OPTIONS
        connections.close_all()


# ---------------------------------------------------------------- PyTorch threads per worker process
_worker_concurrency: int | None = None


@signals.worker_init.connect
def remember_worker_concurrency(sender, **kwargs) -> None:
    # The worker's -c (resolved to an int before this signal, except "auto"); pool processes fork from
    # this process and inherit the module global.
    global _worker_concurrency
    concurrency = getattr(sender, "concurrency", None)
    _worker_concurrency = concurrency if isinstance(concurrency, int) and concurrency > 0 else None


@signals.worker_process_init.connect
def size_torch_threads(**kwargs) -> None:
    """In each pool process (prefork child, or the solo pool's one process): its share of the cores."""
    from django.conf import settings

    cores = available_cores()
    threads = torch_threads_per_process(
        cores=cores, concurrency=_worker_concurrency or cores, override=settings.CRL_WORKER_TORCH_THREADS
    )
    apply_torch_threads(threads=threads)
    logger.info("PyTorch threads in this worker process: %d (%d cores, concurrency %s)", threads, cores,
                _worker_concurrency)
