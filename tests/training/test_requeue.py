"""Publishing jobs: the enqueue never raises and says when the broker did not take the message; jobs left queued
are published again (each worker's watch, worker start, beat) when their queue holds no message, once, harmlessly;
the beat schedule holds every periodic task."""
from __future__ import annotations

import datetime as dt
import time

import pytest

from training import jobs, tasks
from training.jobs import lifecycle, publishing
from training.models import Job, TrainingRun

pytestmark = pytest.mark.django_db(transaction=True)  # the job runs here with its heartbeat thread


@pytest.fixture
def broker_away(monkeypatch):
    """A broker that refuses connections (nothing listens on the port)."""
    from crlsite.celery import app

    saved = app.conf.broker_url, app.conf.broker_transport_options
    # Celery reads CELERY_BROKER_URL from the environment before its configuration (CI sets it): change both.
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    app.conf.broker_url, app.conf.broker_transport_options = "redis://127.0.0.1:1/0", {}
    yield
    app.conf.broker_url, app.conf.broker_transport_options = saved


@pytest.fixture
def queues(monkeypatch):
    """The messages the broker says wait in each queue (0 unless a test sets one); the queues asked are recorded."""
    counts, asked = {}, []

    def waiting(names, **kwargs):
        asked.append(set(names))
        return {name: counts.get(name, 0) for name in names}

    monkeypatch.setattr(publishing, "waiting_messages", waiting)
    counts["asked"] = asked
    return counts


def later(monkeypatch, seconds: float) -> None:
    now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    monkeypatch.setattr(lifecycle, "_now", lambda: now)


def test_a_launch_while_the_broker_is_away_answers_fast_and_leaves_the_job_queued(
        curriculum, broker_away, django_capture_on_commit_callbacks, caplog):
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        job = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=3, interactions=3)

    assert time.monotonic() - started < 5
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED
    assert "could not enqueue training.tasks.run_synthetic_generation" in caplog.text
    assert lifecycle._enqueue(job=job) is False


def test_jobs_still_queued_after_the_setting_are_published_again_and_run_once(
        curriculum, sent, settings, monkeypatch, queues):
    settings.CRL_JOB_REQUEUE_SECONDS = 60
    old = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=3, interactions=3)
    assert sent == [("training.tasks.run_synthetic_generation", old.pk)]  # at launch (on commit)
    assert jobs.requeue_queued_jobs() == 0  # too young: its message may still be on its way

    later(monkeypatch, 61)
    assert jobs.requeue_queued_jobs() == 1
    assert sent == [("training.tasks.run_synthetic_generation", old.pk)] * 2

    monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: True)
    tasks.run_synthetic_generation(old.pk)
    tasks.run_synthetic_generation(old.pk)  # the duplicate message: the claim happens once
    old.refresh_from_db()
    assert old.status == Job.Status.SUCCEEDED and old.attempts == 1
    assert jobs.requeue_queued_jobs() == 0  # finished jobs are never published again


def test_a_starting_worker_publishes_the_jobs_left_queued(curriculum, sent, settings, monkeypatch, queues):
    settings.CRL_JOB_REQUEUE_SECONDS = 60
    job = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=3, interactions=3)
    later(monkeypatch, 120)
    sent.clear()

    tasks._requeue_jobs_whose_message_was_lost(sender=None)

    assert sent == [("training.tasks.run_synthetic_generation", job.pk)]


def test_a_job_whose_queue_holds_messages_is_not_published_again(curriculum, sent, settings, monkeypatch, queues):
    settings.CRL_JOB_REQUEUE_SECONDS = 60
    job = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=3, interactions=3)
    run = jobs.launch_training_run(curriculum=curriculum, num_users=20, interactions=20, epochs=1, no_cuda=True)
    later(monkeypatch, 61)
    sent.clear()
    queues["default"], queues["gpu"] = 3, 0  # the generation waits behind others; the run's message was lost

    assert jobs.requeue_queued_jobs() == 1
    assert sent == [("training.tasks.run_training_run", run.pk)] and job.pk not in {pk for _, pk in sent}


def test_republishing_is_idempotent_against_a_real_broker(curriculum, settings, monkeypatch, tmp_path):
    """kombu's filesystem transport in a fresh folder: the message published once stays in the queue, so a second,
    third... pass publishes nothing more."""
    from crlsite.celery import app, create_filesystem_broker_folders

    broker = tmp_path / "broker"
    options = {"data_folder_in": str(broker / "queue"), "data_folder_out": str(broker / "queue"),
               "processed_folder": str(broker / "processed"), "control_folder": str(broker / "control"),
               "store_processed": False}
    saved = app.conf.broker_url, app.conf.broker_transport_options
    monkeypatch.setenv("CELERY_BROKER_URL", "filesystem://")
    app.conf.broker_url, app.conf.broker_transport_options = "filesystem://", options
    create_filesystem_broker_folders(app)
    settings.CRL_JOB_REQUEUE_SECONDS = 60
    try:
        monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: False)  # the launch's publish was lost
        job = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=3, interactions=3)
        monkeypatch.undo()  # the real enqueue again (and the environment)
        monkeypatch.setenv("CELERY_BROKER_URL", "filesystem://")
        later(monkeypatch, 61)

        assert publishing.waiting_messages({"default"}) == {"default": 0}
        assert [jobs.requeue_queued_jobs() for _ in range(3)] == [1, 0, 0]
        assert publishing.waiting_messages({"default"}) == {"default": 1}
        assert len(list((broker / "queue").iterdir())) == 1 and job.status == Job.Status.QUEUED
    finally:
        app.conf.broker_url, app.conf.broker_transport_options = saved


def test_a_broker_that_cannot_be_asked_gets_nothing_published(curriculum, sent, settings, monkeypatch, broker_away):
    settings.CRL_JOB_REQUEUE_SECONDS = 60
    jobs.launch_synthetic_generation(curriculum=curriculum, num_users=3, interactions=3)
    later(monkeypatch, 61)
    sent.clear()

    started = time.monotonic()
    assert jobs.requeue_queued_jobs() == 0 and sent == []
    assert time.monotonic() - started < 5


def test_the_beat_schedule_runs_every_periodic_task():
    from django.conf import settings

    from curriculum.tasks import BEAT_SCHEDULE as CURRICULUM

    assert settings.CELERY_BEAT_SCHEDULE == {**tasks.BEAT_SCHEDULE, **CURRICULUM}
    by_task = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert by_task["training.tasks.mark_stale_jobs"] == 60
    assert {"training.tasks.requeue_queued_jobs", "curriculum.tasks.reencode_lagging_learner_states"} <= set(by_task)
    from crlsite.celery import app

    assert set(by_task) <= set(app.tasks)


def test_every_task_name_a_job_or_the_registry_publishes_is_a_registered_task():
    from crlsite.celery import app
    from curriculum.services import EVALUATE_TASK

    published = {*jobs.TASK_NAMES.values(), EVALUATE_TASK}
    assert published <= set(app.tasks)
    assert jobs.TASK_NAMES[TrainingRun] == "training.tasks.run_training_run"  # the gpu route and CI rely on it
