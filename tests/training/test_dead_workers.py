"""Dead jobs found in seconds, with a real prefork `celery worker` and no beat: a pool process killed with SIGKILL
(as by the out-of-memory killer) leaves its job failed within DEAD_PROCESS_SECONDS, saying why, and a job whose
message was lost at launch is published again by the worker's own watch."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from curriculum.models import PolicyModel
from training import jobs
from training.jobs import lifecycle

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# The stated bound: Celery's main process learns of the lost pool process (billiard) and sends task_failure.
DEAD_PROCESS_SECONDS = 15  # measured: 2.8 s (CELERY_WORKER_LOST_WAIT 2 s, then task_failure)


@pytest.fixture
def celery_worker_pool() -> str:
    return "prefork"  # the task runs in a pool process, apart from the worker's main process


@pytest.fixture
def celery_worker_environment() -> dict[str, str]:
    return {"CRL_JOB_WATCH_SECONDS": "1", "CRL_JOB_REQUEUE_SECONDS": "1"}


def pool_processes(worker) -> list[int]:
    """The pids of the worker's pool processes (its children)."""
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children")
    if not children.exists():
        pytest.skip("needs Linux's /proc to find the pool process")
    return [int(pid) for pid in children.read_text().split()]


@pytest.mark.trains
def test_a_pool_process_killed_mid_run_leaves_its_run_failed_within_seconds(celery_worker, training_on_the_worker,
                                                                          wait_until):
    run = training_on_the_worker()
    (pool_process,) = pool_processes(celery_worker)
    os.kill(pool_process, signal.SIGKILL)  # as the out-of-memory killer does: no cleanup, no goodbye
    killed = time.monotonic()

    def failed():
        run.refresh_from_db()
        return run.status == "failed"

    wait_until(failed, timeout=DEAD_PROCESS_SECONDS, interval=0.1,
               what=f"{run} to be failed after its pool process was killed")
    print(f"\nthe killed pool process's run was failed {time.monotonic() - killed:.1f} s after the kill")
    assert run.error.startswith("its worker process ended while running it (WorkerLostError:"), run.error
    assert "out-of-memory" in run.error and "retry" in run.error
    assert not PolicyModel.objects.exists()
    assert celery_worker.poll() is None  # the worker lives on (with a new pool process)


def test_a_job_whose_message_was_lost_is_published_again_by_the_workers_watch(
        celery_worker, curriculum, wait_until, monkeypatch):
    monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: False)  # the broker did not take the launch's message
    job = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=3, interactions=3)
    launched = time.monotonic()

    def succeeded():
        job.refresh_from_db()
        return job.status == "succeeded"

    wait_until(succeeded, timeout=60, what=f"{job} to be published again and run (no beat runs)")
    print(f"\nthe job whose message was lost ran {time.monotonic() - launched:.1f} s after its launch")
    assert job.attempts == 1
