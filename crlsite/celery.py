"""The Celery application: configuration comes from Django settings (CELERY_*)."""
import logging
import os
from pathlib import Path

from celery import Celery, signals

from crlsite.worker_threads import apply_torch_threads, available_cores, torch_threads_per_process

logger = logging.getLogger(__name__)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")

app = Celery("crlsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def create_filesystem_broker_folders(sender: Celery, **kwargs) -> None:
    # kombu's filesystem transport fails on a missing folder; create them in every process (web, worker)
    # as soon as the configuration is read, before anything is sent or consumed.
    if str(sender.conf.broker_url or "").startswith("filesystem://"):
        options = sender.conf.broker_transport_options or {}
        for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
            if options.get(key):
                Path(options[key]).mkdir(parents=True, exist_ok=True)


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
