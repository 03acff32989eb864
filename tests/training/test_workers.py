"""Worker health on the admin index: queues without a listening worker, a dead broker, running jobs."""
from __future__ import annotations

import datetime as dt
import socket

import pytest
from celery import Celery
from django.urls import reverse
from django.utils import timezone

from training.models import SyntheticGenerationJob, TrainingRun
from training.workers import QueueInfo, WorkerHealth, format_duration, worker_health

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def brokers_as_configured(monkeypatch):
    # Celery reads CELERY_BROKER_URL from the environment before any app's own broker (CI sets it): the apps made
    # here must use the broker they are given.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)


@pytest.fixture
def empty_broker(tmp_path):
    """A Celery app on a broker of its own with nothing in it (the filesystem transport in fresh folders): what
    other tests left in the configured broker must not count here."""
    from crlsite.celery import create_filesystem_broker_folders

    folders = {key: str(tmp_path / key) for key in ("data_folder_in", "processed_folder", "control_folder")}
    folders["data_folder_out"] = folders["data_folder_in"]
    app = Celery("empty", broker="filesystem://", set_as_current=False)
    app.conf.broker_transport_options = {**folders, "store_processed": False}
    create_filesystem_broker_folders(app)
    return app


class FakeInspect:
    def __init__(self, replies):
        self.replies = replies

    def active_queues(self):
        return self.replies


def test_a_queue_with_waiting_jobs_and_no_worker_says_so(curriculum, monkeypatch, empty_broker):
    app = empty_broker
    TrainingRun.objects.create(curriculum=curriculum, concepts=5)  # queued, for the gpu queue
    # One worker answers, on the default queue only.
    monkeypatch.setattr(app.control, "inspect", lambda **kw: FakeInspect({"w1@host": [{"name": "default"}]}))
    health = worker_health(timeout=0.2, app=app)
    queues = {q.name: q for q in health.queues}
    assert queues["gpu"].queued_jobs == 1 and queues["gpu"].workers == () and queues["gpu"].stranded
    assert queues["default"].workers == ("w1@host",) and not queues["default"].stranded
    assert [w.name for w in health.workers] == ["w1@host"]
    assert any('No worker listens on queue "gpu"' in w and "where 1 queued job waits" in w for w in health.warnings)


def test_no_warning_when_every_queue_with_work_has_a_worker(curriculum, monkeypatch, empty_broker):
    app = empty_broker
    TrainingRun.objects.create(curriculum=curriculum, concepts=5)
    monkeypatch.setattr(app.control, "inspect", lambda **kw: FakeInspect({"gpu1@host": [{"name": "gpu"}]}))
    assert worker_health(timeout=0.2, app=app).warnings == []


def test_a_dead_broker_degrades_to_what_the_database_knows(curriculum):
    SyntheticGenerationJob.objects.create(curriculum=curriculum, status="running", worker="w9@host",
                                          started_at=timezone.now() - dt.timedelta(seconds=75))
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = Celery("dead", broker=f"redis://127.0.0.1:{port}/0")
    health = worker_health(timeout=0.2, app=dead)
    assert health.broker_error and "did not answer" in health.warnings[0]
    assert all(q.messages is None for q in health.queues)
    assert [(r.worker, round(r.runtime_s)) for r in health.running] == [("w9@host", 75)]


def test_a_broker_that_accepts_and_never_answers_is_reported_not_waited_on(curriculum):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        hung = Celery("hung", broker=f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        health = worker_health(timeout=0.2, app=hung)
    assert "Timeout" in health.broker_error


def test_the_admin_index_shows_worker_health_and_survives_a_dead_broker(admin_client, curriculum, monkeypatch):
    import training.templatetags.worker_health as tag

    TrainingRun.objects.create(curriculum=curriculum, concepts=5)
    monkeypatch.setattr(tag, "worker_health", lambda **kw: WorkerHealth(
        broker="redis://x", queues=[QueueInfo(name="gpu", messages=2, queued_jobs=1, workers=())]))
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert 'id="worker-health"' in page and 'No worker listens on queue &quot;gpu&quot;' in page
    monkeypatch.setattr(tag, "worker_health", lambda **kw: WorkerHealth(broker="redis://x", broker_error="ConnectionError: refused"))
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200 and "The broker did not answer" in response.content.decode()


@pytest.mark.parametrize(("seconds", "text"), [(None, "-"), (4.4, "4 s"), (65, "1 min 05 s"), (3725, "1 h 02 min 05 s")])
def test_durations_read_as_hours_minutes_seconds(seconds, text):
    assert format_duration(seconds) == text


def test_a_queued_jobs_page_says_when_no_worker_listens_on_its_queue(admin_client, curriculum, monkeypatch,
                                                                     empty_broker):
    import html

    from django.core.cache import cache

    from training import workers

    cache.delete(workers.LISTENERS_CACHE_KEY)
    asked = []

    def inspect(**kw):
        asked.append(1)
        return FakeInspect({"w1@host": [{"name": "default"}]})  # one worker, on the default queue only

    monkeypatch.setattr(empty_broker.control, "inspect", inspect)
    monkeypatch.setattr("crlsite.celery.app", empty_broker)
    run = TrainingRun.objects.create(curriculum=curriculum, concepts=5)  # queued, for the gpu queue
    page = html.unescape(admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode())
    assert 'No worker listens on queue "gpu": this job waits until one starts' in page
    assert "celery -A crlsite worker -Q gpu" in page
    job = SyntheticGenerationJob.objects.create(curriculum=curriculum, num_users=3)  # queued, for "default"
    page = admin_client.get(reverse("admin:training_syntheticgenerationjob_change", args=[job.pk])).content.decode()
    assert 'id="job-no-worker"' not in page
    assert len(asked) == 1  # the second page reused the cached answer (LISTENERS_CACHE_SECONDS)
    cache.delete(workers.LISTENERS_CACHE_KEY)


def test_queue_listeners_is_none_when_the_broker_does_not_answer(monkeypatch):
    from django.core.cache import cache

    from training import workers

    cache.delete(workers.LISTENERS_CACHE_KEY)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    app = Celery("down", broker=f"redis://127.0.0.1:{port}/0", set_as_current=False)
    assert workers.queue_listeners(timeout=0.2, app=app) is None
    cache.delete(workers.LISTENERS_CACHE_KEY)


def test_the_panel_broadcasts_at_most_once_per_cache_period(curriculum, monkeypatch, empty_broker):
    # the broadcast waits out its timeout whatever the workers do: every admin index page took about 2 s
    from django.core.cache import cache

    from training.workers import LISTENERS_CACHE_KEY

    cache.delete(LISTENERS_CACHE_KEY)
    app, calls = empty_broker, []

    def inspect(**kw):
        calls.append(kw)
        return FakeInspect({"w1@host": [{"name": "default"}, {"name": "gpu"}], "w2@host": [{"name": "gpu"}]})

    monkeypatch.setattr(app.control, "inspect", inspect)
    first = worker_health(timeout=0.2, app=app, cached=True)
    second = worker_health(timeout=0.2, app=app, cached=True)
    assert len(calls) == 1
    for health in (first, second):
        assert {w.name: w.queues for w in health.workers} == {"w1@host": ("default", "gpu"), "w2@host": ("gpu",)}
        assert {q.name: q.workers for q in health.queues}["gpu"] == ("w1@host", "w2@host")
    worker_health(timeout=0.2, app=app)  # not cached: asks the workers
    assert len(calls) == 2
    cache.delete(LISTENERS_CACHE_KEY)
