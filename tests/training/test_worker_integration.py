"""A real `celery worker` process on the real broker and the test database: a run launched from the admin is
trained, evaluated and registered; a worker killed mid-run leaves its run failed by the stale-heartbeat check."""
from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from curriculum.models import PolicyModel
from curriculum.services import verify_policy_artifacts
from training import jobs
from training.jobs import lifecycle
from training.models import TrainingRun

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TINY_FORM = {
    "data_source": "synthetic", "dataset": "", "num_users": "20", "interactions": "20", "concepts": "5",
    "epochs": "1", "batch_size": "16", "seed": "7", "no_cuda": "on", "eval_students": "30",
}


def worker_log(worker) -> str:
    return worker.log_path.read_text(errors="replace")[-6000:]


@pytest.mark.trains
def test_a_run_launched_from_the_admin_is_trained_by_the_worker_and_registered(
    celery_worker, client, admin_user, curriculum, wait_until
):
    client.force_login(admin_user)
    response = client.post(reverse("admin:training_trainingrun_add"), {**TINY_FORM, "curriculum": curriculum.pk})
    assert response.status_code == 302
    run = TrainingRun.objects.get()

    def finished():
        run.refresh_from_db()
        return run.is_finished

    wait_until(finished, timeout=150, what=f"{run} to finish on the worker")
    assert run.status == "succeeded", f"{run.error}\n--- worker log ---\n{worker_log(celery_worker)}"
    policy = PolicyModel.objects.get(training_run=run)
    assert (policy.status, policy.curriculum, policy.version) == ("candidate", curriculum, 1)
    assert set(policy.metrics["results"]) >= {"dt", "random", "round_robin", "leitner", "lowest_recall", "oracle"}
    verify_policy_artifacts(policy=policy)  # the worker stored the files where this process reads them
    status = client.get(reverse("admin:training_trainingrun_status", args=[run.pk])).json()
    assert (status["status"], status["percent"], status["policy_version"]) == ("succeeded", 100.0, 1)


@pytest.mark.trains
def test_a_worker_killed_mid_run_leaves_the_run_failed_by_the_stale_check(
    celery_worker, training_on_the_worker, monkeypatch
):
    run = training_on_the_worker()
    celery_worker.kill()  # SIGKILL: no cleanup, no goodbye, like a lost machine
    celery_worker.wait()

    assert jobs.mark_stale_jobs() == 0  # its last heartbeat is recent: not stale yet
    later = lifecycle._now() + dt.timedelta(seconds=jobs.stale_seconds() + 1)
    monkeypatch.setattr(lifecycle, "_now", lambda: later)
    assert jobs.mark_stale_jobs() == 1
    run.refresh_from_db()
    assert run.status == "failed" and "no heartbeat from its worker test-" in run.error
    assert run.finished_at == later
    assert not PolicyModel.objects.exists()
