"""Publishing jobs: the enqueue never raises and says when the broker did not take the message; jobs left queued
are published again (periodic task and worker start), harmlessly; the beat schedule holds every periodic task."""
from __future__ import annotations

import datetime as dt
import time

import pytest

from training import jobs, tasks
from training.jobs import lifecycle
from training.models import Job

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
        curriculum, sent, settings, monkeypatch):
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


def test_a_starting_worker_publishes_the_jobs_left_queued(curriculum, sent, settings, monkeypatch):
    settings.CRL_JOB_REQUEUE_SECONDS = 60
    job = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=3, interactions=3)
    later(monkeypatch, 120)
    sent.clear()

    tasks._requeue_jobs_whose_message_was_lost(sender=None)

    assert sent == [("training.tasks.run_synthetic_generation", job.pk)]


def test_the_beat_schedule_runs_every_periodic_task():
    from django.conf import settings

    from curriculum.tasks import BEAT_SCHEDULE as CURRICULUM

    assert settings.CELERY_BEAT_SCHEDULE == {**tasks.BEAT_SCHEDULE, **CURRICULUM}
    by_task = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert by_task["training.tasks.mark_stale_jobs"] == 60
    assert {"training.tasks.requeue_queued_jobs", "curriculum.tasks.reencode_lagging_learner_states"} <= set(by_task)
    from crlsite.celery import app

    assert set(by_task) <= set(app.tasks)
