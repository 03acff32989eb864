"""Fixtures shared by the training app's tests."""
from __future__ import annotations

import pytest


@pytest.fixture
def curriculum(make_curriculum):
    """The curriculum the job tests launch for: "algebra", 5 concepts."""
    return make_curriculum("algebra", concepts=5)


@pytest.fixture
def sent(monkeypatch):
    """Tasks the broker took (the Celery app's send_task recorded, nothing sent): (task name, job id)."""
    from crlsite.celery import app

    calls = []
    monkeypatch.setattr(app, "send_task", lambda name, args=(), **kw: calls.append((name, *args)))
    return calls


@pytest.fixture
def training_on_the_worker(curriculum, wait_until):
    """``start() -> run``: a training run of 1,000 epochs launched for the `celery_worker` to run, once it reports
    training progress (a run to kill in the middle)."""
    from training import jobs

    def start():
        run = jobs.launch_training_run(curriculum=curriculum, num_users=40, interactions=20, concepts=5, epochs=1000,
                                       batch_size=16, eval_students=30, no_cuda=True)

        def training():
            run.refresh_from_db()
            return run.status == "running" and run.step > 0

        wait_until(training, timeout=120, what=f"{run} to report training progress")
        return run

    return start
